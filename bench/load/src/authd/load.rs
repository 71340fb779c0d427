//! A closed-loop load like wrk's: N workers, each making one request after another for a warm-up
//! and then a measured period, all at once. Only requests *started* in the measured period count;
//! each is timed from send to checked answer into one HdrHistogram.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;
use hdrhistogram::Histogram;

use crate::report;

/// How many connections, and for how long (the method: 32 connections, 10 s after a
/// 3 s warm-up).
#[derive(Clone, Debug, clap::Args)]
pub struct Timing {
    /// Concurrent connections, one request in flight each.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 3.0)]
    pub warmup_secs: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
}

impl Timing {
    /// The warm-up.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_secs)
    }

    /// The measured period.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_secs)
    }
}

/// What one request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer the case expects (status and body checked).
    Expected,
    /// An answer, but not the expected one.
    Unexpected,
    /// No answer: connection, protocol or transport error.
    Error,
}

/// One connection's worth of load: its own client state, one request per call.
pub trait Worker: Send + 'static {
    /// Makes one request and checks the answer.
    fn once(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// The measured period of a run.
#[derive(Debug)]
pub struct Measured {
    /// Requests started in the measured period.
    pub requests: u64,
    /// Of those, how many got no answer.
    pub errors: u64,
    /// Of those, how many got an answer other than the expected one.
    pub unexpected: u64,
    /// Latency of each, microseconds.
    pub hist: Histogram<u64>,
    /// Length of the measured period.
    pub seconds: f64,
}

impl Measured {
    /// Requests per second over the measured period.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }
}

struct Counts {
    requests: u64,
    errors: u64,
    unexpected: u64,
    hist: Histogram<u64>,
}

/// Runs every worker for `warmup` (not counted) and then `duration`; returns the figures of the
/// measured period and the workers (which may have collected something, e.g. tokens).
pub async fn run<W: Worker>(workers: Vec<W>, warmup: Duration, duration: Duration) -> Result<(Measured, Vec<W>)> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let tasks = workers.into_iter().map(|mut w| {
        tokio::spawn(async move {
            let mut c = Counts { requests: 0, errors: 0, unexpected: 0, hist: report::histogram() };
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let outcome = w.once().await;
                if t >= measure_from {
                    c.requests += 1;
                    match outcome {
                        Outcome::Expected => {}
                        Outcome::Unexpected => c.unexpected += 1,
                        Outcome::Error => c.errors += 1,
                    }
                    c.hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
                }
            }
            (w, c)
        })
    });
    let mut all = Counts { requests: 0, errors: 0, unexpected: 0, hist: report::histogram() };
    let mut workers = Vec::new();
    for done in join_all(tasks).await {
        let (w, c) = done?;
        all.requests += c.requests;
        all.errors += c.errors;
        all.unexpected += c.unexpected;
        all.hist.add(&c.hist)?;
        workers.push(w);
    }
    let measured = Measured {
        requests: all.requests,
        errors: all.errors,
        unexpected: all.unexpected,
        hist: all.hist,
        seconds: duration.as_secs_f64(),
    };
    Ok((measured, workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers in about 1 ms; every third answer is unexpected, every fifth an error.
    struct Fake(u64);

    impl Worker for Fake {
        async fn once(&mut self) -> Outcome {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.0 += 1;
            match self.0 {
                n if n % 5 == 0 => Outcome::Error,
                n if n % 3 == 0 => Outcome::Unexpected,
                _ => Outcome::Expected,
            }
        }
    }

    #[tokio::test]
    async fn counts_only_the_measured_period() {
        let (m, workers) =
            run(vec![Fake(0), Fake(0)], Duration::from_millis(100), Duration::from_millis(300)).await.unwrap();
        let total: u64 = workers.iter().map(|w| w.0).sum();
        assert!(m.requests > 20 && m.requests < total, "{} measured of {total}", m.requests);
        assert_eq!(m.hist.len(), m.requests);
        assert!(m.errors > 0 && m.unexpected > 0 && m.errors + m.unexpected < m.requests, "{m:?}");
        assert!(m.hist.value_at_quantile(0.5) >= 1000, "about 1 ms each: {}", m.hist.value_at_quantile(0.5));
        assert!((m.rps() - m.requests as f64 / 0.3).abs() < 1e-6);
    }
}
