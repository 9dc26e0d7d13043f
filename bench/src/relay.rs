//! A TCP relay on 127.0.0.1 in front of PostgreSQL that holds every chunk for a fixed delay in
//! each direction: the instances reach the database through it, so each of their round trips
//! takes what it would over a network (`trailmark-bench postgres --relay MICROSECONDS`). It shows
//! which code waits on round trips, which a database on the same machine hides. Plain threads
//! (a reader and a writer per direction) rather than a runtime, whose timers tick in
//! milliseconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::postgres::connect;

/// A running relay; its threads end with the process (the benchmark's).
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
}

impl Relay {
    /// Starts relaying connections to `upstream`, each chunk `delay` late in each direction.
    pub(crate) fn start(upstream: SocketAddr, delay: Duration) -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding the relay: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the relay's address: {e}"))?;
        std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    if let Ok(server) = TcpStream::connect(upstream) {
                        let _ = relay_both_ways(client, server, delay);
                    }
                }
            })
            .map_err(|e| format!("starting the relay's thread: {e}"))?;
        Ok(Relay { addr })
    }

    /// `url` (`postgres://user@host:port/database…`) with its host and port replaced by the
    /// relay's.
    pub(crate) fn url_through(url: &str, relay: SocketAddr) -> Result<String, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("--relay needs a postgres://user@host:port/database URL")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        Ok(format!("{scheme}://{user}{relay}{path}"))
    }

    /// The address `url` names, read by the driver's own URL parser (its first host and port).
    pub(crate) fn upstream_of(url: &str) -> Result<SocketAddr, String> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("--postgres-url is not a PostgreSQL URL: {e}"))?;
        let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() else {
            return Err("--relay needs --postgres-url to name a TCP host".into());
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map_err(|e| format!("resolving {host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port} resolves to no address"))
    }
}

/// Starts the threads that carry `client`'s bytes to `server` and back.
fn relay_both_ways(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_out, server_out) = (client.try_clone()?, server.try_clone()?);
    one_way(client, server_out, delay)?;
    one_way(server, client_out, delay)
}

/// Carries what `from` sends to `to`, each chunk `delay` after it arrived: a reader that stamps
/// chunks, and a writer that holds each until it is due, so chunks in flight together are
/// delayed together rather than one after another.
fn one_way(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> std::io::Result<()> {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::Builder::new()
        .name("relay-read".into())
        .spawn(move || {
            let mut buffer = vec![0; 1 << 16];
            while let Ok(n @ 1..) = from.read(&mut buffer) {
                if chunks.send((Instant::now(), buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        })?;
    std::thread::Builder::new()
        .name("relay-write".into())
        .spawn(move || {
            while let Ok((arrived, chunk)) = due.recv() {
                let wait = (arrived + delay).saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        })?;
    Ok(())
}

/// The median time of a `SELECT 1` through `url`, over 200 of them on one connection.
pub(crate) async fn round_trip(url: &str) -> Result<Duration, String> {
    let client = connect(url).await?;
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| format!("a round trip to {url}: {e}"))?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_pointed_at_the_relay_keeping_its_user_and_database() {
        let relay: SocketAddr = "127.0.0.1:6000".parse().expect("address");
        assert_eq!(
            Relay::url_through(
                "postgres://postgres@127.0.0.1:5432/bench_x?sslmode=disable",
                relay
            )
            .expect("url"),
            "postgres://postgres@127.0.0.1:6000/bench_x?sslmode=disable"
        );
        assert_eq!(
            Relay::url_through("postgres://localhost/db", relay).expect("url"),
            "postgres://127.0.0.1:6000/db"
        );
        assert_eq!(
            Relay::upstream_of("postgres://postgres@127.0.0.1/postgres").expect("upstream"),
            "127.0.0.1:5432".parse().expect("address")
        );
    }
}
