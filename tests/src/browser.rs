//! A real, headless Chromium driven through WebDriver (Debian's
//! `chromium-driver` and the `fantoccini` crate).
//!
//! WebDriver rather than CDP because chromedriver hands us the two things
//! the browser tests need with no extra machinery: the browser's console
//! log (`goog:loggingPrefs`), where Chrome reports every CSP violation as a
//! SEVERE entry, and cookies with their HttpOnly/Secure/SameSite flags.
//! chromedriver listens on loopback, so the WebDriver client needs no TLS
//! stack at all.
//!
//! The browser trusts exactly one certificate that is not in any root
//! store: the test server's, pinned by its public key
//! (`--ignore-certificate-errors-spki-list`, honoured only with a separate
//! `--user-data-dir`). Every other certificate error still fails, and the
//! page is a real secure context, so `Secure` and `__Host-` cookies behave
//! as they do in production.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::process::{free_port, wait_for_port, ChildProcess};

/// The cookie type [`Browser::cookies`] returns, for callers' assertions.
pub use cookie::{Cookie, SameSite};

/// One message from the browser's console log.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    pub level: String,
    pub message: String,
}

impl ConsoleEntry {
    /// Chrome logs CSP violations ("Refused to ... because it violates the
    /// following Content Security Policy directive") and script errors as
    /// SEVERE; warnings would be WARNING.
    pub fn is_error(&self) -> bool {
        self.level == "SEVERE"
    }

    pub fn is_csp_violation(&self) -> bool {
        self.message.contains("Content Security Policy")
    }
}

/// A headless Chromium session with its own profile; chromedriver and the
/// browser run in their own process group, killed as a whole on drop.
pub struct Browser {
    pub client: Client,
    driver: ProcessGroup,
    artifacts: PathBuf,
    console: Vec<ConsoleEntry>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromium with a fresh profile. `pinned_spki` are base64
    /// SHA-256 hashes of certificates' public keys to accept (see
    /// [`spki_sha256_base64`]); screenshots go to `artifacts`.
    pub async fn start(pinned_spki: &[String], artifacts: &Path) -> Result<Browser> {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} is missing: apt-get install chromium chromium-driver (tests/run does)"
                );
            }
        }
        std::fs::create_dir_all(artifacts)
            .with_context(|| format!("creating {}", artifacts.display()))?;
        let profile = tempfile::tempdir()?;
        let port = free_port();
        let mut command = Command::new("/usr/bin/chromedriver");
        command.arg(format!("--port={port}"));
        // Its own group, so dropping the handle also ends the browser
        // processes chromedriver started.
        command.process_group(0);
        let driver = ProcessGroup(ChildProcess::spawn(
            command,
            &profile.path().join("chromedriver.log"),
        )?);
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20))
            .with_context(|| driver.0.log_text())?;

        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ),
        ];
        if !pinned_spki.is_empty() {
            args.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                pinned_spki.join(",")
            ));
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .with_context(|| format!("a chromedriver session:\n{}", driver.0.log_text()))?;
        Ok(Browser {
            client,
            driver,
            artifacts: artifacts.to_path_buf(),
            console: Vec::new(),
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("goto {url}"))
    }

    pub async fn url(&self) -> Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Waits up to 20 s for an element matching the CSS selector.
    pub async fn wait_css(&self, css: &str) -> Result<fantoccini::elements::Element> {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for `{css}`"));
        match found {
            Ok(element) => Ok(element),
            Err(e) => Err(e.context(self.describe().await)),
        }
    }

    /// Where the browser is and what the page says, for failure messages.
    pub async fn describe(&self) -> String {
        let url = self.url().await.unwrap_or_default();
        let body = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        format!("at {url}, the page says:\n{body}")
    }

    /// Whether an element matching the CSS selector is on the page now.
    pub async fn has(&self, css: &str) -> Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.wait_css(css).await?.text().await?)
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.wait_css(css).await?.click().await?;
        Ok(())
    }

    /// Clicks, then waits until the page the element was on has gone (the
    /// element is stale), so the next lookup sees the new page.
    pub async fn click_to_navigate(&self, css: &str) -> Result<()> {
        let element = self.wait_css(css).await?;
        element.click().await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while element.tag_name().await.is_ok() {
            if Instant::now() > deadline {
                bail!("clicking `{css}` did not leave {}", self.url().await?);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Types `text` into the field matching the CSS selector.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let field = self.wait_css(css).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    /// Waits until the page's URL satisfies `pred`; returns it.
    pub async fn wait_url(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.url().await?;
            if pred(&url) {
                return Ok(url);
            }
            if Instant::now() > deadline {
                bail!(
                    "the browser never reached {what}; {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the viewport as `<artifacts>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Every console entry since the session started (chromedriver hands
    /// each entry out once; they accumulate here).
    pub async fn console(&mut self) -> Result<&[ConsoleEntry]> {
        let entries = self.client.issue_cmd(BrowserLog).await?;
        for entry in entries.as_array().into_iter().flatten() {
            self.console.push(ConsoleEntry {
                level: entry["level"].as_str().unwrap_or_default().to_owned(),
                message: entry["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(&self.console)
    }

    /// Console errors (CSP violations included) since the session started.
    pub async fn console_errors(&mut self) -> Result<Vec<ConsoleEntry>> {
        Ok(self
            .console()
            .await?
            .iter()
            .filter(|e| e.is_error())
            .cloned()
            .collect())
    }

    /// Every cookie the browser holds for the current page, HttpOnly ones
    /// included, with their flags.
    pub async fn cookies(&self) -> Result<Vec<Cookie<'static>>> {
        Ok(self.client.get_all_cookies().await?)
    }

    /// Ends the WebDriver session (chromedriver closes the browser), then
    /// the driver.
    pub async fn close(self) -> Result<()> {
        let Browser { client, driver, .. } = self;
        client.close().await?;
        drop(driver);
        Ok(())
    }
}

/// chromedriver's log endpoint (`POST /session/{id}/se/log`), which reads
/// and clears the console entries collected under `goog:loggingPrefs`.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// A child that leads its own process group; the group dies with it.
struct ProcessGroup(ChildProcess);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // The group id is the leader's pid (`process_group(0)`); only
        // processes this handle started are in it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.pid())])
            .status();
    }
}

/// The base64 SHA-256 of a PEM private key's SubjectPublicKeyInfo, the
/// form `--ignore-certificate-errors-spki-list` takes.
pub fn spki_sha256_base64(key_pem: &Path) -> Result<String> {
    let pem = std::fs::read_to_string(key_pem)
        .with_context(|| format!("reading {}", key_pem.display()))?;
    let key = rcgen::KeyPair::from_pem(&pem)?;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    );
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}
