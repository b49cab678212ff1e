//! Prometheus metrics (text format at GET /metrics): requests and their latency per
//! endpoint and status, requests in flight, 503 rejections, engine swaps, and the
//! served index's generation, products and events.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::state::{generation_of, AppState};
use crate::Engine;

/// Latency buckets in seconds: 1 ms (a cached keyword search) to 10 s (a large
/// batch of events waiting for the disk).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The registry and its instruments.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGaugeVec,
    max_in_flight: IntGauge,
    /// Requests refused with 503 because every worker permit was taken.
    pub rejected: IntCounter,
    /// Engines swapped in after a build published a generation.
    pub swaps: IntCounter,
    /// Published generations that failed to open.
    pub swap_failures: IntCounter,
    /// Merges of catalog updates into a new generation.
    pub merges: IntCounter,
    /// Merges that failed.
    pub merge_failures: IntCounter,
    generation: IntGauge,
    products: IntGauge,
    events: IntGauge,
    pending_updates: IntGauge,
    cache_hits: IntGauge,
    cache_misses: IntGauge,
    encoded_queries: IntGauge,
    encoder_passes: IntGauge,
}

impl Metrics {
    /// A registry with every instrument, all at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("shelfrank_http_requests_total", "HTTP requests answered"),
            &["endpoint", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "shelfrank_http_request_duration_seconds",
                "Time to answer an HTTP request",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint", "method", "status"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let m = Metrics {
            requests,
            latency,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "shelfrank_requests_in_flight",
                    "Requests holding a worker permit (kind read or write); there is no other queue",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            max_in_flight: gauge(
                "shelfrank_requests_in_flight_max",
                "Worker permits of each kind, read and write (--max-inflight)",
            ),
            rejected: counter(
                "shelfrank_rejected_total",
                "Requests refused with 503 because every worker permit was taken",
            ),
            swaps: counter(
                "shelfrank_engine_swaps_total",
                "Newly published generations swapped in",
            ),
            swap_failures: counter(
                "shelfrank_engine_swap_failures_total",
                "Newly published generations that failed to open",
            ),
            merges: counter(
                "shelfrank_merges_total",
                "Catalog updates merged into a new generation",
            ),
            merge_failures: counter(
                "shelfrank_merge_failures_total",
                "Merges of catalog updates that failed",
            ),
            pending_updates: gauge(
                "shelfrank_pending_updates",
                "Products changed since the served generation was built (not yet merged)",
            ),
            cache_hits: gauge(
                "shelfrank_query_cache_hits",
                "Query-embedding cache hits of the served engine",
            ),
            cache_misses: gauge(
                "shelfrank_query_cache_misses",
                "Query-embedding cache misses of the served engine",
            ),
            encoded_queries: gauge(
                "shelfrank_encoded_queries",
                "Query texts the served engine encoded",
            ),
            encoder_passes: gauge(
                "shelfrank_encoder_passes",
                "Forward passes that encoded them (queries / passes = mean micro-batch)",
            ),
            generation: gauge("shelfrank_index_generation", "The generation served"),
            products: gauge(
                "shelfrank_index_products",
                "Products in the served generation",
            ),
            events: gauge("shelfrank_events", "Shopper events in the store"),
            registry,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.latency.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.max_in_flight.clone()),
            Box::new(m.rejected.clone()),
            Box::new(m.swaps.clone()),
            Box::new(m.swap_failures.clone()),
            Box::new(m.merges.clone()),
            Box::new(m.merge_failures.clone()),
            Box::new(m.pending_updates.clone()),
            Box::new(m.cache_hits.clone()),
            Box::new(m.cache_misses.clone()),
            Box::new(m.encoded_queries.clone()),
            Box::new(m.encoder_passes.clone()),
            Box::new(m.generation.clone()),
            Box::new(m.products.clone()),
            Box::new(m.events.clone()),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// Records the generation and size of `engine`, the one now served.
    pub fn set_engine(&self, engine: &Engine) {
        self.generation
            .set(i64::try_from(generation_of(engine)).unwrap_or(i64::MAX));
        self.products
            .set(i64::try_from(engine.len()).unwrap_or(i64::MAX));
        if let Ok(n) = engine.event_count() {
            self.events.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.pending_updates
            .set(i64::try_from(engine.pending_updates()).unwrap_or(i64::MAX));
    }

    /// Reads the served engine's query-path counters (at each scrape).
    pub fn set_query_path(&self, engine: &Engine) {
        let g = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        let (hits, misses) = engine.query_cache_stats();
        self.cache_hits.set(g(hits));
        self.cache_misses.set(g(misses));
        let (texts, passes) = engine.query_batch_stats();
        self.encoded_queries.set(g(texts));
        self.encoder_passes.set(g(passes));
    }

    /// The text exposition of every metric, as of now.
    pub fn render(&self, (reads, writes): (usize, usize), max_in_flight: usize) -> String {
        for (kind, n) in [("read", reads), ("write", writes)] {
            self.in_flight
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.max_in_flight
            .set(i64::try_from(max_in_flight).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            eprintln!("error: cannot encode the metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts every request and times it, labelled by its route (the
/// pattern, like `/products/{id}`, never the raw path, so labels stay few).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [endpoint.as_str(), method, status.as_str()];
    let m = &state.metrics;
    m.requests.with_label_values(&labels).inc();
    m.latency
        .with_label_values(&labels)
        .observe(start.elapsed().as_secs_f64());
    res
}
