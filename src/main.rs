//! The `shelfrank` command line: a thin layer over the library. Each command lives in
//! its own file under `src/cli/`: it parses flags, calls the library, and prints.

mod cli;

/// mimalloc keeps freed memory for reuse; with glibc's malloc the encoder's
/// per-batch buffers were returned to the kernel and faulted in again, about 15%
/// of an int8 encode (README, "int8 and bf16 on the CPU"). The library leaves the
/// allocator to the program that embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "shelfrank", version, about = "Hybrid product search: BM25 + BERT embeddings + HNSW, fused, reranked per shopper", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from a product catalog (JSONL, CSV or TSV).
    Build(cli::build::BuildArgs),
    /// Embed a catalog part into a directory of precomputed embeddings, for
    /// `build --embeddings` (a build spread over machines, e.g. Spark executors).
    Embed(cli::embed::EmbedArgs),
    /// Search an index.
    Search(cli::search::SearchArgs),
    /// Evaluate retrieval modes against graded judgements (TREC qrels), or
    /// personalised ranking on search tasks.
    Eval(cli::eval::EvalArgs),
    /// Measure HNSW recall@k against exact search, and latency, for several ef values.
    HnswRecall(cli::recall::HnswRecallArgs),
    /// Shopper events: import a JSONL file into the index's store, or forget a shopper.
    #[command(subcommand)]
    Events(cli::events::EventsCommand),
    /// Train the CTR head from search tasks, impressions or graded judgements.
    Train(cli::train::TrainArgs),
    /// Fine-tune the index's sentence encoder on judgements or logs; writes a new
    /// model directory when it beats the base on held-out queries.
    Tune(cli::tune::TuneArgs),
    /// Rerank candidates found by another engine for a query (and shopper).
    Rerank(cli::rerank::RerankArgs),
    /// Serve the index over HTTP (JSON): search, rerank, events, metrics.
    Serve(cli::serve::ServeArgs),
    /// Measure encoder throughput on catalog titles and single-query latency.
    EmbedBench(cli::bench::EmbedBenchArgs),
    /// Search latency per mode (query encoding included, query cache off) and the
    /// process's memory while serving.
    SearchBench(cli::search_bench::SearchBenchArgs),
}

fn main() {
    // The crash tests' hooks: FAILPOINTS=NAME=return aborts at that step.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let res = match Cli::parse().command {
        Command::Build(a) => cli::build::run(a),
        Command::Embed(a) => cli::embed::run(a),
        Command::Search(a) => cli::search::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::HnswRecall(a) => cli::recall::run(a),
        Command::Events(c) => cli::events::run(c),
        Command::Train(a) => cli::train::run(a),
        Command::Tune(a) => cli::tune::run(a),
        Command::Rerank(a) => cli::rerank::run(a),
        Command::EmbedBench(a) => cli::bench::run(a),
        Command::SearchBench(a) => cli::search_bench::run(a),
        Command::Serve(a) => cli::serve::run(a),
    };
    if let Err(e) = res {
        // The reader of stdout went away (`| head`): not an error of ours.
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            return;
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
