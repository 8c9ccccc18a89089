//! `tally healthcheck`: a container HEALTHCHECK that needs no curl.
//!
//! A plain HTTP/1.0 `GET /healthz` over a blocking socket: no runtime, no
//! client library, nothing to go wrong in a minimal image.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// Succeeds when the server at `listen` answers `/healthz` with 200.
pub fn check(listen: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let target = loopback_for(listen);
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("connecting to {target}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 32];
    let mut len = 0;
    while len < head.len() {
        match stream.read(&mut head[len..])? {
            0 => break,
            n => len += n,
        }
    }
    let status = std::str::from_utf8(&head[..len]).unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("{target} answered /healthz with {code}"),
        None => bail!("{target} sent no HTTP status"),
    }
}

/// A server listening on every address is checked on loopback.
fn loopback_for(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_map_to_loopback() {
        assert_eq!(
            loopback_for("0.0.0.0:8000".parse().unwrap()),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert_eq!(
            loopback_for("[::]:80".parse().unwrap()),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            loopback_for("10.0.0.5:8000".parse().unwrap()),
            "10.0.0.5:8000".parse().unwrap()
        );
    }

    #[test]
    fn fails_when_nothing_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(check(addr, Duration::from_millis(500)).is_err());
    }
}
