//! Policy pieces the topics compose: API keys, basic users, routes to the
//! recording upstream, and `check` on a policy that must be refused.

use gatehouse_tests::TestPki;

use super::{last_lines, LISTEN};

/// Hex SHA-256, as `[[api_key]] sha256` wants it.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// An `[[api_key]]` entry.
pub fn api_key(name: &str, key: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "\n[[api_key]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{}]\n",
        sha256_hex(key),
        roles.join(", ")
    )
}

/// A `[[route]]` to the recording upstream, with `rest` (access and
/// other keys) appended.
pub fn route(name: &str, path: &str, rest: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"{{upstream}}\"\n{rest}\n"
    )
}

/// Runs `gatehouse-gateway check` on `LISTEN` + `sections` and expects it
/// to refuse the policy with a message that names `must_mention`.
pub fn check_refuses(sections: &str, must_mention: &str) -> Result<(), String> {
    let pki = TestPki::new().expect("test CA");
    let leaf = pki
        .issue("server", &["localhost"], 30)
        .expect("certificate");
    let dir = pki.dir.path();
    let text = format!("{LISTEN}{sections}")
        .replace("{upstream}", "http://127.0.0.1:9")
        .replace("{https}", "8443")
        .replace("{http}", "8080")
        .replace("{admin}", "9090")
        .replace("{cert}", &leaf.cert.display().to_string())
        .replace("{key}", &leaf.key.display().to_string())
        .replace("{dir}", &dir.display().to_string());
    let path = dir.join("check.toml");
    std::fs::write(&path, text).expect("write policy");
    let out = std::process::Command::new(gatehouse_tests::binaries::gateway())
        .arg("check")
        .arg("--policy")
        .arg(&path)
        .output()
        .expect("run check");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Err("check accepted the policy".to_owned())
    } else if said.contains("unknown field") {
        Err(format!("refused as an unknown key: {}", last_lines(&said)))
    } else if !said.contains(must_mention) {
        Err(format!(
            "refused, but not naming {must_mention}: {}",
            last_lines(&said)
        ))
    } else {
        Ok(())
    }
}

/// The password of every test basic user.
pub const CORRECT_HORSE: &str = "correct horse";

/// argon2id of [`CORRECT_HORSE`] with the gateway's own parameters (OWASP:
/// 19 MiB, 2 passes), for vectors about the cost of verification.
const OWASP_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$MC9NYUEdXllel7wdQnpKBw$pzZg16nxXQ3IBy3L6Xt2qUaV2YRndkIrKV3qK9m/N+E";

/// argon2id of [`CORRECT_HORSE`] with 1 MiB and one pass: the gateway
/// verifies whatever parameters a hash names, and topics that are not
/// about verification cost should not wait for it (a debug build takes
/// about a second per OWASP verification).
fn cheap_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(1024, 1, 1, None).expect("argon2 parameters");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"attack-suite-salt").expect("salt");
        argon
            .hash_password(CORRECT_HORSE.as_bytes(), &salt)
            .expect("argon2id hash")
            .to_string()
    })
}

/// A `[[basic_user]]` whose password is [`CORRECT_HORSE`], cheap to verify.
pub fn basic_user(name: &str, roles: &[&str]) -> String {
    basic_user_with(name, roles, cheap_hash())
}

/// A `[[basic_user]]` whose hash has the gateway's default cost.
pub fn basic_user_owasp(name: &str, roles: &[&str]) -> String {
    basic_user_with(name, roles, OWASP_HASH)
}

fn basic_user_with(name: &str, roles: &[&str], hash: &str) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "\n[[basic_user]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nroles = [{}]\n",
        roles.join(", ")
    )
}

/// `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}
