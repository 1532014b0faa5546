//! `gatehouse-healthcheck`: the `healthcheck` subcommand of both programs,
//! a container health probe that needs no curl or shell in the image. One
//! HTTP GET to an admin listener; success is a 200.
//!
//! A crate of its own because both binaries use it and neither may depend
//! on the other; it knows nothing of the policy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GET http://{addr}{path}: {source}")]
    Io {
        addr: SocketAddr,
        path: String,
        source: std::io::Error,
    },
    #[error("GET http://{addr}{path}: {status_line}")]
    NotOk {
        addr: SocketAddr,
        path: String,
        status_line: String,
    },
}

/// GETs `path` from `addr` and succeeds on status 200.
pub fn probe(addr: SocketAddr, path: &str) -> Result<(), ProbeError> {
    let head = status_line(addr, path).map_err(|source| ProbeError::Io {
        addr,
        path: path.to_owned(),
        source,
    })?;
    if head.split_whitespace().nth(1) == Some("200") {
        return Ok(());
    }
    Err(ProbeError::NotOk {
        addr,
        path: path.to_owned(),
        status_line: if head.is_empty() {
            "no answer".into()
        } else {
            head
        },
    })
}

fn status_line(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    // Only the status line matters; stop reading once it is complete
    // rather than waiting for the server to close the connection (the
    // admin listeners keep connections open).
    let mut head = Vec::new();
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    Ok(head.lines().next().unwrap_or("").trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            stream.write_all(answer.as_bytes()).unwrap();
            // Keep the connection open, as the admin listeners do.
            std::thread::sleep(Duration::from_secs(1));
        });
        addr
    }

    #[test]
    fn a_200_passes_without_waiting_for_the_connection_to_close() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let started = std::time::Instant::now();
        probe(addr, "/readyz").unwrap();
        assert!(started.elapsed() < Duration::from_millis(900));
    }

    #[test]
    fn anything_else_fails_with_the_status_line() {
        let addr = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let error = probe(addr, "/readyz").unwrap_err().to_string();
        assert!(
            error.ends_with("/readyz: HTTP/1.1 503 Service Unavailable"),
            "{error}"
        );
    }

    #[test]
    fn nobody_listening_is_an_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            probe(addr, "/healthz"),
            Err(ProbeError::Io { .. })
        ));
    }
}
