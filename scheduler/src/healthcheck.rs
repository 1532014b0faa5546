//! `gatehouse-scheduler healthcheck`: a container health probe that needs no
//! curl or shell in the image. One HTTP/1.0 GET to the admin listener;
//! success is a 200.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(3);

/// GETs `path` from `addr` and succeeds on status 200.
pub fn probe(addr: SocketAddr, path: &str) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = Vec::new();
    stream.take(1024).read_to_end(&mut head)?;
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "GET http://{addr}{path}: {}",
            head.lines().next().unwrap_or("no answer")
        );
    }
    Ok(())
}
