//! A vector's expectations, for the client and the upstream: the status
//! (and headers) the attacker gets, and exactly what reaches the server
//! behind the gateway.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_tests::RecordedRequest;

use super::H1Response;

pub fn verdict(problems: Vec<String>, context: &str) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} [got: {context}]", problems.join("; ")))
    }
}

/// One raw HTTP/1.1 attack and what must happen.
pub struct Vector {
    pub name: String,
    pub request: Vec<u8>,
    pub from: Option<IpAddr>,
    pub sni: String,
    pub expect: Expect,
}

/// Starts a vector; the defaults expect nothing in particular, so every
/// vector names its status and its upstream outcome.
pub fn vector(name: impl Into<String>, request: impl Into<Vec<u8>>) -> Vector {
    Vector {
        name: name.into(),
        request: request.into(),
        from: None,
        sni: "localhost".to_owned(),
        expect: Expect::default(),
    }
}

impl Vector {
    pub fn from(mut self, source: IpAddr) -> Self {
        self.from = Some(source);
        self
    }

    pub fn sni(mut self, name: &str) -> Self {
        self.sni = name.to_owned();
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.expect.status = vec![status];
        self
    }

    /// Any of these statuses is acceptable (all equally safe).
    pub fn status_in(mut self, statuses: &[u16]) -> Self {
        self.expect.status = statuses.to_vec();
        self
    }

    /// The response must carry `name` with exactly `value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.expect
            .headers
            .push((name.to_owned(), Some(value.to_owned())));
        self
    }

    /// The response must not carry `name`.
    pub fn no_header(mut self, name: &str) -> Self {
        self.expect.headers.push((name.to_owned(), None));
        self
    }

    /// The gateway must close the connection after answering.
    pub fn closes(mut self) -> Self {
        self.expect.closes = true;
        self
    }

    /// No byte reaches the upstream.
    pub fn nothing(mut self) -> Self {
        self.expect.upstream = Upstream::Nothing;
        self
    }

    /// Exactly one request reaches the upstream, and it matches `seen`.
    pub fn reaches(mut self, seen: Seen) -> Self {
        self.expect.upstream = Upstream::Exactly(seen);
        self
    }

    /// Nothing reaches the upstream, or one request matching `seen`.
    pub fn at_most(mut self, seen: Seen) -> Self {
        self.expect.upstream = Upstream::NothingOr(seen);
        self
    }
}

#[derive(Default)]
pub struct Expect {
    pub status: Vec<u16>,
    pub headers: Vec<(String, Option<String>)>,
    pub closes: bool,
    pub upstream: Upstream,
}

impl Expect {
    pub fn check_response(&self, response: &H1Response) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.status.contains(&response.status) {
            problems.push(format!(
                "status {} (want {:?})",
                response.status, self.status
            ));
        }
        for (name, want) in &self.headers {
            let got = response.header(name);
            match (want, &got) {
                (Some(w), Some(g)) if w == g => {}
                (None, None) => {}
                _ => problems.push(format!("response {name}: {got:?} (want {want:?})")),
            }
        }
        if self.closes && !response.closed {
            problems.push("connection left open".to_owned());
        }
        problems
    }
}

/// What the upstream must have received for one vector.
#[derive(Default)]
pub enum Upstream {
    /// Not one byte.
    #[default]
    Nothing,
    /// Exactly one complete request, matching.
    Exactly(Seen),
    /// Nothing, or exactly one matching request (either is safe).
    NothingOr(Seen),
    /// No complete request: a head whose body was cut short is never
    /// processed by the upstream, so it is harmless.
    NoComplete,
}

impl Upstream {
    pub fn check(&self, received: &[RecordedRequest]) -> Result<(), String> {
        match self {
            Upstream::Nothing if received.is_empty() => Ok(()),
            Upstream::Nothing => Err(format!("upstream received {}", describe(received))),
            Upstream::NothingOr(_) if received.is_empty() => Ok(()),
            Upstream::NoComplete if received.iter().all(|r| !r.complete) => Ok(()),
            Upstream::NoComplete => Err(format!("upstream received {}", describe(received))),
            Upstream::Exactly(seen) | Upstream::NothingOr(seen) => match received {
                [one] if one.complete => seen.verify(one),
                _ => Err(format!(
                    "upstream should receive one {} {}, received {}",
                    seen.method,
                    seen.target,
                    describe(received)
                )),
            },
        }
    }
}

/// Requests as one line each, for failure messages.
pub fn describe(received: &[RecordedRequest]) -> String {
    if received.is_empty() {
        return "nothing".to_owned();
    }
    let lines: Vec<String> = received
        .iter()
        .map(|r| {
            let head = r.head_text().replace("\r\n", "\\r\\n");
            let head: String = head.chars().take(300).collect();
            format!("[{}{head}]", if r.complete { "" } else { "partial: " })
        })
        .collect();
    format!("{} request(s): {}", received.len(), lines.join(" "))
}

type Check = Arc<dyn Fn(&RecordedRequest) -> Result<(), String> + Send + Sync>;

/// A request the upstream must have received: method, target, and header
/// rules. Names compare ignoring ASCII case; `absent` names also match any
/// spelling with `_` for `-`, since CGI-style servers read them as one.
#[derive(Clone)]
pub struct Seen {
    method: String,
    target: String,
    exact: Vec<(String, String)>,
    absent: Vec<String>,
    checks: Vec<Check>,
}

pub fn seen(method: &str, target: &str) -> Seen {
    Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        exact: Vec::new(),
        absent: Vec::new(),
        checks: Vec::new(),
    }
}

impl Seen {
    /// `name` arrived exactly once, with exactly `value`.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.exact.push((name.to_owned(), value.to_owned()));
        self
    }

    /// No header named `name` (in any case, `_` or `-`) arrived.
    pub fn without(mut self, names: &[&str]) -> Self {
        self.absent.extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// Any further rule.
    pub fn rule(
        mut self,
        rule: impl Fn(&RecordedRequest) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Arc::new(rule));
        self
    }

    pub fn verify(&self, r: &RecordedRequest) -> Result<(), String> {
        let mut problems = Vec::new();
        if r.method != self.method || r.target != self.target {
            problems.push(format!(
                "upstream got {} {} (want {} {})",
                r.method, r.target, self.method, self.target
            ));
        }
        for (name, value) in &self.exact {
            let values = r.header_values(name);
            if values != [value.clone()] {
                problems.push(format!("upstream {name}: {values:?} (want [{value:?}])"));
            }
        }
        let fold = |n: &str| n.to_ascii_lowercase().replace('_', "-");
        for name in &self.absent {
            if let Some((got, value)) = r.headers.iter().find(|(n, _)| fold(n) == fold(name)) {
                problems.push(format!(
                    "upstream received {got}: {}",
                    String::from_utf8_lossy(value)
                ));
            }
        }
        for rule in &self.checks {
            if let Err(e) = rule(r) {
                problems.push(e);
            }
        }
        verdict(problems, &describe(std::slice::from_ref(r)))
    }
}
