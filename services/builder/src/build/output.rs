//! The build's output stream to the gateway: dockerd's JSON messages, one per frame.
//!
//! With `-q` everything is held back (dockerd writes it to a buffer) and only the image ID is
//! sent at the end, or the held-back lines and the error when the build fails.

use wharf_bus::progress::{ErrorDetail, JsonMessage};
use wharf_bus::stream::Sender;
use wharf_bus::BusError;

/// How a build failed.
#[derive(Debug)]
pub enum Failure {
    /// A typed error: before any output it becomes the HTTP status of the answer, as dockerd
    /// answers errors it meets before writing (a bad Dockerfile is a 400).
    Bus(BusError),
    /// A failing RUN: the message and the command's exit code, which the CLI exits with.
    Code { message: String, code: i64 },
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        Failure::Bus(e)
    }
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Bus(e) => &e.message,
            Failure::Code { message, .. } => message,
        }
    }
}

pub struct Output {
    tx: Option<Sender>,
    quiet: bool,
    held: Vec<JsonMessage>,
    /// Whether anything reached the client.
    sent: bool,
}

impl Output {
    pub fn new(tx: Sender, quiet: bool) -> Output {
        Output {
            tx: Some(tx),
            quiet,
            held: Vec::new(),
            sent: false,
        }
    }

    /// Sends (or holds back) one message. An error means the client went away.
    pub async fn send(&mut self, message: JsonMessage) -> Result<(), BusError> {
        if self.quiet {
            self.held.push(message);
            return Ok(());
        }
        self.sent = true;
        match self.tx.as_mut() {
            Some(tx) => tx.send_json(&message).await,
            None => Ok(()),
        }
    }

    /// Resolves when the client has gone away (its gateway cancelled or stopped answering):
    /// a step waiting on a quiet command stops then. Never resolves with `-q`'s held output
    /// either, until then.
    pub async fn gone(&mut self) -> BusError {
        match self.tx.as_mut() {
            Some(tx) => tx.gone().await,
            None => std::future::pending().await,
        }
    }

    /// `{"stream": text}`.
    pub async fn line(&mut self, text: impl Into<String>) -> Result<(), BusError> {
        self.send(JsonMessage::stream(text)).await
    }

    /// `{"aux": {"ID": id}}`: the CLI keeps the last for `--iidfile`.
    pub async fn image_id(&mut self, id: &str) -> Result<(), BusError> {
        self.send(JsonMessage {
            aux: Some(serde_json::json!({ "ID": id })),
            ..Default::default()
        })
        .await
    }

    /// Ends a successful build (with `-q`, the ID is all the client sees).
    pub async fn succeed(mut self, id: &str) {
        let Some(mut tx) = self.tx.take() else { return };
        if self.quiet {
            let _ = tx.send_json(&JsonMessage::stream(format!("{id}\n"))).await;
        }
        let _ = tx.finish().await;
    }

    /// Ends a failed build: an error status when nothing was sent yet, else the held-back
    /// lines (with `-q`) and a last error line.
    pub async fn fail(mut self, failure: Failure) {
        let Some(mut tx) = self.tx.take() else { return };
        if !self.sent && self.held.is_empty() {
            if let Failure::Bus(e) = &failure {
                tx.fail(e).await;
                return;
            }
        }
        for m in std::mem::take(&mut self.held) {
            if tx.send_json(&m).await.is_err() {
                return;
            }
        }
        let (message, code) = match failure {
            Failure::Bus(e) => (e.message, None),
            Failure::Code { message, code } => (message, u16::try_from(code).ok()),
        };
        let line = JsonMessage {
            error_detail: Some(ErrorDetail {
                code,
                message: message.clone(),
            }),
            error: Some(message),
            ..Default::default()
        };
        if tx.send_json(&line).await.is_ok() {
            let _ = tx.finish().await;
        }
    }
}
