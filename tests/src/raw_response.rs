//! What came back on a raw connection, read until the peer closed it or
//! went quiet: for tests that send malformed bytes, where no framing can
//! say when the answer is complete (compare [`crate::http1`]).

use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How long a connection must stay silent to count as done.
const QUIET: Duration = Duration::from_millis(1500);

/// What came back on a raw connection, and whether the peer closed it.
pub struct RawResponse {
    pub text: String,
    pub closed: bool,
}

impl RawResponse {
    /// The status code of the first response, 0 if there is none.
    pub fn status(&self) -> u16 {
        self.text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

pub async fn read_until_quiet<S: AsyncReadExt + Unpin>(stream: &mut S) -> RawResponse {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut closed = false;
    loop {
        match tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    RawResponse {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}
