//! An in-process SMTP sink on 127.0.0.1 for tests: `mailin`'s protocol state machine
//! behind a `std::net` accept loop, one thread per connection. Plain text only (optionally
//! with AUTH PLAIN/LOGIN over plain text, so credentials can be checked).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder, response};

/// One message as the server received it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// The EHLO/HELO name.
    pub helo: String,
    /// Envelope sender (MAIL FROM), without brackets.
    pub from: String,
    /// Envelope recipients (RCPT TO), in order.
    pub to: Vec<String>,
    /// Headers and body as sent (CRLF line ends, dot-unstuffed).
    pub data: Vec<u8>,
    /// The (user, password) the client authenticated with, if it did.
    pub auth: Option<(String, String)>,
}

impl Received {
    /// The data as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The body: what follows the first empty line.
    pub fn body(&self) -> String {
        let text = self.text();
        match text.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_owned(),
            None => String::new(),
        }
    }
}

/// A running sink. The accept loop runs until the test process ends.
pub struct SmtpSink {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    messages: Receiver<Received>,
    auth_attempts: Arc<Mutex<Vec<(String, String)>>>,
}

impl SmtpSink {
    /// A sink that accepts any message, without authentication.
    pub fn start() -> SmtpSink {
        SmtpSink::start_inner(None)
    }

    /// A sink that advertises AUTH (over plain text) and accepts only `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> SmtpSink {
        SmtpSink::start_inner(Some((user.to_owned(), password.to_owned())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> SmtpSink {
        // Bound before the thread starts: no readiness race.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let (tx, messages) = mpsc::channel();
        let auth_attempts = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::clone(&auth_attempts);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (tx, credentials, attempts) =
                    (tx.clone(), credentials.clone(), Arc::clone(&attempts));
                thread::spawn(move || {
                    let _ = serve(conn, tx, credentials, attempts);
                });
            }
        });
        SmtpSink {
            port,
            messages,
            auth_attempts,
        }
    }

    /// The next message, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Received> {
        self.messages.recv_timeout(timeout).ok()
    }

    /// A message already received, if any.
    pub fn try_recv(&self) -> Option<Received> {
        self.messages.try_recv().ok()
    }

    /// Every (user, password) pair clients tried, right or wrong.
    pub fn auth_attempts(&self) -> Vec<(String, String)> {
        self.auth_attempts
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }
}

struct Sink {
    tx: Sender<Received>,
    credentials: Option<(String, String)>,
    attempts: Arc<Mutex<Vec<(String, String)>>>,
    current: Received,
}

impl Sink {
    fn check(&mut self, user: &str, password: &str) -> Response {
        if let Ok(mut a) = self.attempts.lock() {
            a.push((user.to_owned(), password.to_owned()));
        }
        match &self.credentials {
            Some((u, p)) if u == user && p == password => {
                self.current.auth = Some((user.to_owned(), password.to_owned()));
                response::AUTH_OK
            }
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

impl Handler for Sink {
    fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        self.current.helo = domain.to_owned();
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current.from = from.to_owned();
        self.current.to = to.to_vec();
        self.current.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let _ = self.tx.send(self.current.clone());
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, authn: &str, password: &str) -> Response {
        self.check(authn, password)
    }

    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.check(username, password)
    }
}

fn serve(
    stream: TcpStream,
    tx: Sender<Received>,
    credentials: Option<(String, String)>,
    attempts: Arc<Mutex<Vec<(String, String)>>>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut builder = SessionBuilder::new("sink.test");
    if credentials.is_some() {
        builder
            .enable_auth(AuthMechanism::Plain)
            .enable_auth(AuthMechanism::Login)
            .insecure_enable_plaintext_auth();
    }
    let sink = Sink {
        tx,
        credentials,
        attempts,
        current: Received::default(),
    };
    let mut session = builder.build(stream.peer_addr()?.ip(), sink);
    let mut writer = stream.try_clone()?;
    session.greeting().write_to(&mut writer)?;
    writer.flush()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let res = session.process(&line);
        if res.action != Action::NoReply {
            res.write_to(&mut writer)?;
            writer.flush()?;
        }
        match res.action {
            // No STARTTLS support here: the session never advertises it.
            Action::Close | Action::UpgradeTls => return Ok(()),
            _ => {}
        }
    }
}
