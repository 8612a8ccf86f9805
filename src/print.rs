//! Writing to stdout and stderr without panicking when the reader has gone away
//! (`trailhub runs | head -1`): every line the binary prints goes through here.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `BrokenPipe`, and `println!`
//! panics on it. Here the first such failure marks the stream gone and every later write to it
//! is dropped: the command carries on to its end and exits with its usual code, quietly. A
//! command that runs a workflow therefore finishes (or stops) as it would have, with every
//! transition journaled, rather than dying between an AWS call and its journal entry.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout; dropped once stdout's reader has gone away.
pub fn write_out(args: fmt::Arguments<'_>) {
    write(&mut io::stdout().lock(), &STDOUT_GONE, args);
}

/// Writes `args` to stderr; dropped once stderr's reader has gone away.
pub fn write_err(args: fmt::Arguments<'_>) {
    write(&mut io::stderr().lock(), &STDERR_GONE, args);
}

/// Writes raw bytes to stdout (a completion script, an SVG), as [`write_out`] does text.
pub fn out_bytes(bytes: &[u8]) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = io::stdout().lock();
    if stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Any other write error (a full disk behind a redirection, say) is treated as the reader
/// going away too: there is nowhere left to say it.
fn write(stream: &mut impl Write, gone: &AtomicBool, args: fmt::Arguments<'_>) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if stream
        .write_fmt(args)
        .and_then(|()| stream.flush())
        .is_err()
    {
        gone.store(true, Ordering::Relaxed);
    }
}

/// `println!` to stdout that never panics (see the module's doc).
macro_rules! outln {
    () => {
        $crate::print::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::print::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout that never panics.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print::write_out(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::print::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader went away.
    struct Closed(usize);

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.0 += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stream_is_written_once_then_left_alone() {
        let gone = AtomicBool::new(false);
        let mut closed = Closed(0);
        write(&mut closed, &gone, format_args!("first\n"));
        write(&mut closed, &gone, format_args!("second\n"));
        assert!(gone.load(Ordering::Relaxed));
        assert_eq!(
            closed.0, 1,
            "nothing is written after the first broken pipe"
        );
    }
}
