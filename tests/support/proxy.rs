//! A forward proxy on loopback, for the outbound-proxy tests: `CONNECT`
//! tunnels and absolute-form HTTP requests (one request a connection), each
//! only with the proxy's Basic credentials. It records what it carried, and
//! routes authorities it was told about (`127.0.0.2:PORT`, where nothing
//! listens) to where they really are; any other authority must be a loopback
//! address, so nothing leaves the machine.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request or tunnel the proxy carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// `CONNECT`, or the HTTP method of a forwarded request.
    pub method: String,
    /// `host:port` asked for.
    pub authority: String,
    /// The forwarded request's path and query; empty for a tunnel.
    pub path: String,
}

pub struct TestProxy {
    pub addr: SocketAddr,
    credentials: String,
    carried: Arc<Mutex<Vec<Carried>>>,
    /// Requests refused for missing or wrong credentials.
    refused: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// A proxy taking `user:password`, routing each authority of `routes` to its address.
    pub async fn start(credentials: &str, routes: &[(String, SocketAddr)]) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let carried = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let state = Arc::new(State {
            expected: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
            routes: routes.iter().cloned().collect(),
            carried: carried.clone(),
            refused: refused.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = carry(socket, &state).await;
                });
            }
        });
        TestProxy {
            addr,
            credentials: credentials.to_owned(),
            carried,
            refused,
            task,
        }
    }

    /// `http://user:password@127.0.0.1:PORT`, as the proxy variables take it.
    pub fn url(&self) -> String {
        format!("http://{}@{}", self.credentials, self.addr)
    }

    pub fn carried(&self) -> Vec<Carried> {
        self.carried.lock().unwrap().clone()
    }

    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    expected: String,
    routes: HashMap<String, SocketAddr>,
    carried: Arc<Mutex<Vec<Carried>>>,
    refused: Arc<Mutex<usize>>,
}

impl State {
    /// Where `authority` really is: a route, or a loopback address as given.
    async fn connect(&self, authority: &str) -> std::io::Result<TcpStream> {
        let addr = match self.routes.get(authority) {
            Some(addr) => *addr,
            None => authority
                .parse::<SocketAddr>()
                .ok()
                .filter(|addr| addr.ip().is_loopback())
                .ok_or_else(|| std::io::Error::other(format!("no route to {authority}")))?,
        };
        TcpStream::connect(addr).await
    }
}

async fn carry(mut client: TcpStream, state: &State) -> std::io::Result<()> {
    let (head, early_body) = read_head(&mut client).await?;
    let mut lines = head.split("\r\n");
    let request_line: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let [method, target, version] = request_line[..] else {
        return client.write_all(&answer("400 Bad Request")).await;
    };
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let authorized = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("proxy-authorization") && *value == state.expected
    });
    if !authorized {
        *state.refused.lock().unwrap() += 1;
        return client
            .write_all(&answer("407 Proxy Authentication Required"))
            .await;
    }
    let (authority, path) = match method {
        "CONNECT" => (target, ""),
        _ => {
            let rest = target.strip_prefix("http://").unwrap_or(target);
            let at = rest.find('/').unwrap_or(rest.len());
            (&rest[..at], &rest[at..])
        }
    };
    let Ok(mut upstream) = state.connect(authority).await else {
        return client.write_all(&answer("502 Bad Gateway")).await;
    };
    state.carried.lock().unwrap().push(Carried {
        method: method.to_owned(),
        authority: authority.to_owned(),
        path: path.to_owned(),
    });
    if method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        // Origin form, without the proxy's headers, and the last request of
        // this connection: the next one comes on a new connection, so each is
        // seen and routed.
        let mut forwarded = format!("{method} {path} {version}\r\n");
        for (name, value) in &headers {
            let hop_by_hop = ["proxy-authorization", "proxy-connection", "connection"]
                .iter()
                .any(|hop| name.eq_ignore_ascii_case(hop));
            if !hop_by_hop {
                forwarded.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        forwarded.push_str("connection: close\r\n\r\n");
        upstream.write_all(forwarded.as_bytes()).await?;
    }
    upstream.write_all(&early_body).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// The request head (without its blank line) and whatever followed it in the same reads.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            return Ok((head, buffer[end + 4..].to_vec()));
        }
        let read = socket.read(&mut chunk).await?;
        if read == 0 || buffer.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn answer(status: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nproxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .into_bytes()
}
