//! Writing to emu's own stdout and stderr without `println!`'s panic when the reader has gone.
//!
//! `emu status | head -3` or `emu up | head` close the pipe early. `println!` panics on that
//! (Rust ignores SIGPIPE, so the write returns EPIPE), which for `emu status` is exit 101 and for
//! `emu up` is worse: the task forwarding an instance's log dies, the instance's pipe fills, and
//! the app blocks on its next log line. A reader that left had what it wanted, so the rest is
//! dropped quietly and the app's output keeps being drained.

use std::io::Write;

/// Which of emu's own streams a line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Writes `text` as it is (no newline added); a closed pipe is not an error.
pub fn write(stream: Stream, text: &str) {
    let result = match stream {
        Stream::Stdout => write_all(&mut std::io::stdout().lock(), text),
        Stream::Stderr => write_all(&mut std::io::stderr().lock(), text),
    };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::BrokenPipe && stream == Stream::Stdout {
            // stderr is where this would go; if stderr is gone too there is nowhere left.
            let _ = writeln!(std::io::stderr(), "emu: cannot write to stdout: {e}");
        }
    }
}

/// Writes `line` and a newline.
pub fn line(stream: Stream, line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    write(stream, &text);
}

fn write_all(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}
