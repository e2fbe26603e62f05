//! Speed of the encoder: one query at a time on the calling thread (after warm-up), and a
//! knowledge base's questions in a batch on several threads.
//!
//! cargo run --release -p helpdesk-embed --example bench -- QUERIES.txt [THREADS]
//!
//! QUERIES.txt holds one text a line (customer questions); the batch embeds 10,000 of them
//! (repeating the file as needed), as importing 1,000 articles with 10 questions each does.

use helpdesk_embed::{model_path, Model, Role};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args.next().ok_or("usage: bench QUERIES.txt [THREADS]")?;
    let threads: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(2);
    let text = std::fs::read_to_string(&file)?;
    let queries: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if queries.is_empty() {
        return Err("no queries in the file".into());
    }

    let path = model_path().path;
    let started = Instant::now();
    let model = Model::load(&path)?;
    println!("load: {:.0} ms", started.elapsed().as_secs_f64() * 1e3);

    for q in queries.iter().take(50) {
        model.embed(q, Role::Query);
    }
    // Wall-clock time, and the thread's own time on a CPU (Linux's schedstat), which a
    // machine busy with other work does not inflate.
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = queries
        .iter()
        .take(2_000)
        .map(|q| {
            let (t, c) = (Instant::now(), cpu_ns());
            std::hint::black_box(model.embed(q, Role::Query));
            let c = cpu_ns().zip(c).map(|(b, a)| (b - a) as f64 / 1e6);
            (t.elapsed().as_secs_f64() * 1e3, c.unwrap_or(f64::NAN))
        })
        .unzip();
    for (name, times) in [("wall", &mut wall), ("cpu", &mut cpu)] {
        times.sort_by(f64::total_cmp);
        let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        println!(
            "one query ({name}), {} queries on one thread: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            times.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }

    let batch: Vec<&str> = queries.iter().copied().cycle().take(10_000).collect();
    let t = Instant::now();
    let vectors = model.embed_batch(&batch, Role::Query, threads);
    println!(
        "batch: {} questions on {threads} threads in {:.1} s",
        vectors.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Nanoseconds this thread has spent on a CPU.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
