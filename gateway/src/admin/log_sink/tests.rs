use super::*;
use std::sync::Condvar;

/// An output the test can read, and can make stall.
#[derive(Clone, Default)]
struct Output {
    bytes: Arc<Mutex<Vec<u8>>>,
    stall: Arc<(Mutex<Stall>, Condvar)>,
}

#[derive(Default)]
struct Stall {
    armed: bool,
    entered: bool,
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8(lock(&self.bytes).clone()).expect("utf-8")
    }

    /// The next write blocks until [`release`](Self::release).
    fn arm(&self) {
        lock(&self.stall.0).armed = true;
    }

    fn wait_entered(&self) {
        let (state, changed) = &*self.stall;
        let mut state = lock(state);
        while !state.entered {
            state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn release(&self) {
        lock(&self.stall.0).armed = false;
        self.stall.1.notify_all();
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (state, changed) = &*self.stall;
        let mut state = lock(state);
        if state.armed {
            state.entered = true;
            changed.notify_all();
            while state.armed {
                state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        }
        drop(state);
        lock(&self.bytes).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_line_of_every_thread_arrives_in_that_threads_order() {
    let output = Output::default();
    let sink = LogSink::start(Box::new(output.clone())).expect("writer thread");
    let writers: Vec<_> = (0..4)
        .map(|thread| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for line in 0..2_000 {
                    sink.append_with(|b| {
                        b.extend_from_slice(format!("{thread} {line}\n").as_bytes())
                    });
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    sink.stop();
    let mut next = [0u32; 4];
    for line in output.text().lines() {
        let (thread, n) = line.split_once(' ').expect("whole line");
        let thread: usize = thread.parse().expect("thread");
        assert_eq!(n.parse::<u32>().expect("line"), next[thread], "{line}");
        next[thread] += 1;
    }
    assert_eq!(next, [2_000; 4]);
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn a_stalled_output_drops_and_counts_lines_past_the_cap_and_keeps_the_rest() {
    let output = Output::default();
    let sink = LogSink::start(Box::new(output.clone())).expect("writer thread");
    output.arm();
    sink.append_urgent(b"first\n");
    output.wait_entered();
    // The writer is stuck writing "first"; this thread's buffer fills.
    let line = format!("{}\n", "x".repeat(1023));
    let fit = THREAD_CAP / line.len();
    for _ in 0..fit + 10 {
        sink.append_with(|b| b.extend_from_slice(line.as_bytes()));
    }
    assert_eq!(sink.dropped(), 10);
    output.release();
    sink.stop();
    let text = output.text();
    assert_eq!(text.lines().count(), 1 + fit);
    assert!(text.starts_with("first\n"));
}

#[test]
fn stop_writes_what_is_buffered_and_later_lines_are_dropped() {
    let output = Output::default();
    let sink = LogSink::start(Box::new(output.clone())).expect("writer thread");
    sink.append_with(|b| b.extend_from_slice(b"before\n"));
    sink.stop();
    assert_eq!(output.text(), "before\n");
    sink.append_with(|b| b.extend_from_slice(b"after\n"));
    sink.append_urgent(b"after, urgent\n");
    assert_eq!(sink.dropped(), 2);
    assert_eq!(output.text(), "before\n");
}

#[test]
fn an_exited_threads_buffer_is_written_then_forgotten() {
    let output = Output::default();
    let sink = LogSink::start(Box::new(output.clone())).expect("writer thread");
    let other = sink.clone();
    std::thread::spawn(move || {
        other.append_with(|b| b.extend_from_slice(b"from a thread that ends\n"))
    })
    .join()
    .expect("thread");
    for _ in 0..100 {
        if lock(&sink.shared.buffers).is_empty() {
            break;
        }
        std::thread::sleep(FLUSH_INTERVAL / 4);
    }
    assert!(lock(&sink.shared.buffers).is_empty());
    assert_eq!(output.text(), "from a thread that ends\n");
    sink.stop();
}
