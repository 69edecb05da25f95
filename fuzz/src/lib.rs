//! Shared by the fuzz targets: an in-memory stream that serves the fuzz
//! input to async code (in pieces of fuzz-chosen sizes, then EOF) and
//! swallows what is written to it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct MockStream<'a> {
    input: &'a [u8],
    pos: usize,
    /// Largest piece returned by one read (≥ 1).
    piece: usize,
    pub written: usize,
    /// The first bytes written (up to 4 KiB), for assertions.
    pub head: Vec<u8>,
}

impl<'a> MockStream<'a> {
    pub fn new(input: &'a [u8], piece: usize) -> Self {
        MockStream { input, pos: 0, piece: piece.max(1), written: 0, head: Vec::new() }
    }
}

impl AsyncRead for MockStream<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.piece.min(self.input.len() - self.pos).min(buf.remaining());
        let (p, input) = (self.pos, self.input);
        buf.put_slice(&input[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MockStream<'_> {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written += buf.len();
        let room = 4096usize.saturating_sub(self.head.len());
        let take = room.min(buf.len());
        self.head.extend_from_slice(&buf[..take]);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A current-thread runtime whose clock is paused: `/sleep/MS` and other
/// timers complete at once (the clock jumps when everything is idle). One per
/// process, reused by every execution (building one costs more than a run).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap())
}
