//! The HTTP/1.1 server around [`App::route`]: one request per connection, each bounded.
//!
//! - A connection that sends nothing for [`READ_TIMEOUT`], or has not sent its whole request
//!   within [`REQUEST_DEADLINE`], gets a 408 and is closed: a slow client cannot hold a thread.
//! - A head over [`MAX_HEAD`] bytes gets a 431; a body over [`MAX_BODY`] a 413, refused from
//!   its declared `Content-Length` before any of it is read.
//! - At most [`MAX_CONNECTIONS`] connections are served at once; one more gets a 503 at once.
//!
//! Written here rather than taken from a server crate: tiny_http 0.12, the small synchronous
//! one, has no read timeout, and its body reader drains an unread body with a buffer of the
//! whole declared length (`vec![0; remaining]` in its `Drop`: `Content-Length: 10^13` would
//! ask for that much; read in its source, not tried). `httparse` parses the request head.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::api::{App, Reply};

/// Longest wait for the next bytes of a request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time a whole request may take to arrive.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 << 10;
/// Largest request body (a drawing's PNG is some 10 KiB).
pub const MAX_BODY: usize = 2 << 20;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a closing connection waits for the rest of an unread request.
const LINGER: Duration = Duration::from_secs(1);
/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `stop` is raised, then waits for the requests in flight.
pub fn serve(listener: &TcpListener, app: &Arc<App>, stop: &AtomicBool) -> anyhow::Result<()> {
    listener
        .set_nonblocking(true)
        .context("cannot poll the listening socket")?;
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let (stream, _) = match listener.accept() {
            Ok(connection) => connection,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            // A connection reset before it was accepted, or a full descriptor table: the
            // next one may do better.
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        let busy = active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS;
        let (app, done) = (app.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("relumax-serve".into())
            .spawn(move || {
                handle(stream, (!busy).then_some(&*app));
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    while active.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Reads one request from `stream` and answers it (with `app`, or a 503 without one).
fn handle(mut stream: TcpStream, app: Option<&App>) {
    // Accepted sockets inherit the listener's non-blocking mode on some systems. Every read
    // sets its own timeout (`read_some`, the drain in `write_reply`).
    let configured = stream.set_nonblocking(false).is_ok()
        && stream.set_write_timeout(Some(READ_TIMEOUT)).is_ok();
    if !configured {
        return;
    }
    let (reply, head_only) = match app {
        None => (
            Reply::error(503, "too many connections; try again in a moment"),
            false,
        ),
        Some(app) => match read_request(&mut stream) {
            Ok(request) => (
                app.route(&request.method, &request.path, &request.body),
                request.method == "HEAD",
            ),
            Err(reply) => (reply, false),
        },
    };
    // The client may be gone; there is nobody to tell.
    let _ = write_reply(&mut stream, &reply, head_only);
}

/// A request as read off the wire.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Reads a request head and its body, within the bounds at the top of this file.
fn read_request(stream: &mut TcpStream) -> Result<Request, Reply> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(4096);
    let (method, path, length, head_len) = loop {
        read_some(stream, &mut buf, MAX_HEAD + 1, deadline)?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let length = body_length(parsed.headers)?;
                let method = parsed.method.unwrap_or_default().to_string();
                let path = parsed.path.unwrap_or_default().to_string();
                break (method, path, length, head_len);
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(Reply::error(431, "request head too large"));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Reply::error(431, "too many request headers"));
            }
            Err(e) => return Err(Reply::error(400, format!("malformed request: {e}"))),
        }
    };
    if length > MAX_BODY {
        return Err(Reply::error(
            413,
            format!("request body of {length} bytes; the limit is {MAX_BODY}"),
        ));
    }
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        read_some(stream, &mut body, length, deadline)?;
    }
    body.truncate(length);
    Ok(Request { method, path, body })
}

/// The body length a head declares (0 without `Content-Length`); chunked bodies are refused.
fn body_length(headers: &[httparse::Header<'_>]) -> Result<usize, Reply> {
    let mut length = 0;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reply::error(
                411,
                "send a Content-Length, not a chunked body",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).unwrap_or_default().trim();
            // A length too large for usize is too large for MAX_BODY too.
            length = match text.parse::<u64>() {
                Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Err(_) => return Err(Reply::error(400, "malformed Content-Length")),
            };
        }
    }
    Ok(length)
}

/// Appends what the client sent next (up to `limit` bytes in all) to `buf`.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
    deadline: Instant,
) -> Result<(), Reply> {
    let timeout = || Reply::error(408, "the request did not arrive in time");
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timeout());
    }
    stream
        .set_read_timeout(Some(left.min(READ_TIMEOUT)))
        .map_err(|_| timeout())?;
    let mut chunk = [0u8; 16 << 10];
    let want = chunk.len().min(limit.saturating_sub(buf.len())).max(1);
    loop {
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(Reply::error(400, "the connection closed mid-request")),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timeout());
            }
            Err(e) => return Err(Reply::error(400, format!("cannot read the request: {e}"))),
        }
    }
}

/// Writes `reply` (without its body for `HEAD`) and closes the connection.
fn write_reply(stream: &mut TcpStream, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&reply.body)?;
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)?;
    // Closing with unread input would reset the connection, and the client could lose the
    // reply (a 413 while it is still sending): read what is left first, for at most LINGER
    // and MAX_BODY bytes (a trickling client cannot stretch it).
    let deadline = Instant::now() + LINGER;
    let mut chunk = [0u8; 16 << 10];
    let mut left = MAX_BODY;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(wait))?;
        let want = left.min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => left -= n,
        }
    }
    Ok(())
}

/// The reason phrase of each status this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Binds `addr` (an ephemeral port for port 0).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))
}
