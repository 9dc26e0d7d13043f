//! A sequential HTTP/1 client over one keep-alive connection, for the read benchmark: one
//! request at a time, so each latency is the server's work on an otherwise idle server plus one
//! loopback round trip.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    bearer: HeaderValue,
    /// `None` after the connection failed; the next request opens a new one.
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr, api_key: &str) -> Result<Self, String> {
        Ok(Client {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).map_err(|e| format!("host: {e}"))?,
            bearer: HeaderValue::from_str(&format!("Bearer {api_key}"))
                .map_err(|e| format!("API key header: {e}"))?,
            sender: None,
        })
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        Ok(sender)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.bearer.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        request
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|e| format!("building {path}: {e}"))
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), String> {
        let request = self.request(method, path, body)?;
        let outcome = async {
            let response = self
                .sender()
                .await?
                .send_request(request)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{path}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        }
        .await;
        if outcome.is_err() {
            self.sender = None;
        }
        outcome
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&mut self, path: &str) -> Result<Value, String> {
        let (status, body) = self.send(Method::GET, path, None).await?;
        json_answer(path, status, &body, StatusCode::OK)
    }

    /// `POST path` with a JSON body, which must answer `expected` with JSON.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: &Value,
        expected: StatusCode,
    ) -> Result<Value, String> {
        let (status, answer) = self
            .send(Method::POST, path, Some(body.to_string()))
            .await?;
        json_answer(path, status, &answer, expected)
    }

    /// `GET path` (a 200), writing the body to `out` as it arrives; returns the bytes written.
    pub async fn download(&mut self, path: &str, out: &Path) -> Result<u64, String> {
        let request = self.request(Method::GET, path, None)?;
        let response = self
            .sender()
            .await?
            .send_request(request)
            .await
            .map_err(|e| format!("download: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("download answered {}", response.status()));
        }
        let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut body = response.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("download: {e}"))?;
            if let Some(data) = frame.data_ref() {
                file.write_all(data)
                    .map_err(|e| format!("{}: {e}", out.display()))?;
                written += data.len() as u64;
            }
        }
        file.flush()
            .map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(written)
    }
}

fn json_answer(
    path: &str,
    status: StatusCode,
    body: &[u8],
    expected: StatusCode,
) -> Result<Value, String> {
    let text = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(300)
            .collect::<String>()
    };
    if status != expected {
        return Err(format!("{path} answered {status}: {}", text()));
    }
    serde_json::from_slice(body).map_err(|e| format!("{path} answered non-JSON ({e}): {}", text()))
}
