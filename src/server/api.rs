//! The service's request and response bodies (with their OpenAPI schemas), the JSON
//! extractor that names the field a bad body gets wrong, and the conversions to and
//! from the library's types.
//!
//! Request bodies refuse unknown fields, so a misspelt option is an error instead of
//! being silently ignored. Events are the exception in form, not in strictness: they
//! are read by the library's events reader (the JSONL line format), one object each.

use std::collections::BTreeMap;
use std::pin::Pin;

use axum::body::{Body, HttpBody};
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::state::AppState;
use crate::engine::{Filters, Hit, Mode, ScoreBreakdown};
use crate::profile::events::parse_timestamp;
use crate::rank::RerankMode;
use crate::Product;

/// A JSON body read with the server's size limit; a body that does not parse is a
/// 400 naming the field (`filters.min_price`) through `serde_path_to_error`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > drain_cap(limit) as u64) {
            return Err(too_large(limit));
        }
        let bytes = read_body(req.into_body(), limit).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// How much of a too-large body is read (and dropped) before answering 413: a
/// client that sends its whole body before reading the answer then sees the 413
/// instead of a reset connection. Beyond this the connection is just closed.
fn drain_cap(limit: usize) -> usize {
    limit.saturating_mul(4)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Reads a body of at most `limit` bytes; a longer one is read on up to
/// [`drain_cap`], dropped, and answered 413.
async fn read_body(mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > drain_cap(limit) {
            break;
        }
        if seen <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(buf)
}

/// Parses `bytes` as one JSON value of type `T` (nothing after it), naming the
/// field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_data() {
            "invalid request"
        } else {
            "malformed JSON"
        };
        let err = ApiError::bad_request(format!("{what}: {inner}"));
        if path == "." || path == "?" || path.is_empty() {
            err
        } else {
            ApiError::bad_field(path, err.body.error)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A point in time: Unix seconds, or a timestamp text (RFC 3339 or ISO 8601; a
/// zone-less time is read as UTC).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Timestamp {
    /// Unix seconds.
    Seconds(i64),
    /// RFC 3339 or ISO 8601 text.
    Text(String),
}

impl Timestamp {
    fn seconds(&self, field: &str) -> Result<i64, ApiError> {
        match self {
            Timestamp::Seconds(s) => Ok(*s),
            Timestamp::Text(t) => parse_timestamp(t).map_err(|e| ApiError::bad_field(field, e)),
        }
    }
}

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// Keyword (BM25) only.
    Bm25,
    /// Embeddings only.
    Dense,
    /// Both, fused (the default).
    Hybrid,
}

impl From<ModeName> for Mode {
    fn from(m: ModeName) -> Mode {
        match m {
            ModeName::Bm25 => Mode::Bm25,
            ModeName::Dense => Mode::Dense,
            ModeName::Hybrid => Mode::Hybrid,
        }
    }
}

/// How a shopper's results are reranked.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RerankName {
    /// The trained head if there is one, else the profile formula (the default).
    Auto,
    /// The trained CTR head (400 when the index has none).
    Ctr,
    /// The fallback formula: profile similarity, popularity, retrieval.
    Profile,
    /// No reranking.
    Off,
}

impl From<RerankName> for RerankMode {
    fn from(m: RerankName) -> RerankMode {
        match m {
            RerankName::Auto => RerankMode::Auto,
            RerankName::Ctr => RerankMode::Ctr,
            RerankName::Profile => RerankMode::Profile,
            RerankName::Off => RerankMode::Off,
        }
    }
}

/// Restrictions on the products returned; all given conditions must hold.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FiltersBody {
    /// Category path prefix, e.g. `"Bath > Faucets"` (segments compare case-insensitively).
    pub category: Option<String>,
    /// Brand (case-insensitive).
    pub brand: Option<String>,
    /// Minimum price, inclusive.
    #[schema(minimum = 0)]
    pub min_price: Option<f64>,
    /// Maximum price, inclusive.
    #[schema(minimum = 0)]
    pub max_price: Option<f64>,
    /// Attribute equalities, exact match.
    pub attributes: Option<BTreeMap<String, String>>,
}

impl From<FiltersBody> for Filters {
    fn from(f: FiltersBody) -> Filters {
        Filters {
            category_prefix: f.category.as_deref().map(Filters::category),
            brand: f.brand,
            min_price: f.min_price,
            max_price: f.max_price,
            attributes: f.attributes.unwrap_or_default().into_iter().collect(),
        }
    }
}

/// POST /search.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// What the shopper typed.
    #[schema(max_length = 1000)]
    pub query: String,
    /// Number of hits (default 10).
    #[schema(minimum = 1, maximum = 10000)]
    pub k: Option<usize>,
    /// Retrievers (default hybrid).
    pub mode: Option<ModeName>,
    /// Restrictions.
    pub filters: Option<FiltersBody>,
    /// The shopper, for personalised reranking.
    pub user: Option<String>,
    /// Rank as of this time (default now): only earlier events count.
    pub as_of: Option<Timestamp>,
    /// Reranking when a user is given (default auto).
    pub rerank: Option<RerankName>,
    /// Diversity weight for MMR over embeddings (default 0: off).
    #[schema(minimum = 0, maximum = 1)]
    pub diversity: Option<f32>,
}

/// The limits the service puts on requests, beyond the library's own checks.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest query, in characters.
    pub max_query_chars: usize,
    /// Most candidates in one rerank request.
    pub max_candidates: usize,
    /// Most events in one request.
    pub max_events: usize,
    /// Most products in one request.
    pub max_products: usize,
}

impl Default for Limits {
    /// 8 MiB bodies (10,000 events of about 800 bytes), 1,000-character queries (far
    /// above any typed query), 1,000 candidates (a reranker's usual depth is 100-500),
    /// 10,000 events and 1,000 products per request.
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_query_chars: 1000,
            max_candidates: 1000,
            max_events: 10_000,
            max_products: 1000,
        }
    }
}

/// Refuses a list field holding more than `max` items, naming it: "N field; at
/// most M are allowed per request".
fn check_count(field: &str, n: usize, max: usize) -> Result<(), ApiError> {
    if n > max {
        return Err(ApiError::bad_field(
            field,
            format!("{n} {field}; at most {max} are allowed per request"),
        ));
    }
    Ok(())
}

fn check_query(query: &str, limits: &Limits) -> Result<(), ApiError> {
    let n = query.chars().count();
    if n > limits.max_query_chars {
        return Err(ApiError::bad_field(
            "query",
            format!(
                "the query has {n} characters; at most {} are allowed",
                limits.max_query_chars
            ),
        ));
    }
    Ok(())
}

/// The library's filter checks, with the field named as in the request
/// (`filters.min_price`).
fn check_filters(f: &Filters) -> Result<(), ApiError> {
    f.validate()
        .map_err(|e| ApiError::from(e).in_field("filters"))
}

impl SearchBody {
    /// The library request, after the service's own limits.
    pub fn into_request(self, limits: &Limits) -> Result<crate::SearchRequest, ApiError> {
        check_query(&self.query, limits)?;
        let mut req = crate::SearchRequest::new(self.query);
        if let Some(k) = self.k {
            req.k = k;
        }
        if let Some(m) = self.mode {
            req.mode = m.into();
        }
        if let Some(f) = self.filters {
            req.filters = f.into();
        }
        check_filters(&req.filters)?;
        req.user = self.user;
        req.as_of = self.as_of.map(|t| t.seconds("as_of")).transpose()?;
        if let Some(r) = self.rerank {
            req.rerank = r.into();
        }
        if let Some(d) = self.diversity {
            req.diversity = d;
        }
        Ok(req)
    }
}

/// One feature's share of the CTR head's score.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Contribution {
    /// The feature's name.
    pub feature: String,
    /// Its approximate contribution to the head's logit.
    pub value: f32,
}

/// Why a hit ranks where it does.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Breakdown {
    /// BM25 score, when known.
    pub bm25: Option<f32>,
    /// 1-based rank in the keyword list.
    pub bm25_rank: Option<usize>,
    /// Query/product cosine, when known.
    pub dense: Option<f32>,
    /// 1-based rank in the dense list.
    pub dense_rank: Option<usize>,
    /// The fused retrieval score.
    pub fused: f32,
    /// The CTR head's probability, when it ranked the hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctr: Option<f32>,
    /// The profile term, when personalised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<f32>,
    /// Per-feature contributions, when the head ranked the hit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<Contribution>,
}

impl From<&ScoreBreakdown> for Breakdown {
    fn from(b: &ScoreBreakdown) -> Self {
        Breakdown {
            bm25: b.bm25,
            bm25_rank: b.bm25_rank,
            dense: b.dense,
            dense_rank: b.dense_rank,
            fused: b.fused,
            ctr: b.ctr,
            profile: b.profile,
            contributions: b
                .contributions
                .iter()
                .map(|(feature, value)| Contribution {
                    feature: feature.clone(),
                    value: *value,
                })
                .collect(),
        }
    }
}

/// One result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HitBody {
    /// Product id.
    pub id: String,
    /// Final score (higher is better).
    pub score: f32,
    /// The product's title.
    pub title: Option<String>,
    /// Score breakdown.
    pub breakdown: Breakdown,
}

impl HitBody {
    /// The answer's form of `hit`, titled from `engine`'s catalog.
    pub fn of(engine: &crate::Engine, hit: &Hit) -> Self {
        HitBody {
            id: hit.id.clone(),
            score: hit.score,
            title: engine.product(&hit.id).map(|p| p.title.clone()),
            breakdown: Breakdown::from(&hit.breakdown),
        }
    }
}

/// The answer of POST /search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    /// The hits, best first.
    pub hits: Vec<HitBody>,
    /// Time spent in the engine, in milliseconds.
    pub took_ms: f64,
}

/// A candidate found by another engine.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateBody {
    /// Product id.
    pub id: String,
    /// The other engine's score (higher is better); without one, the order counts.
    pub score: Option<f32>,
}

/// POST /rerank.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankBody {
    /// The query the candidates were found for.
    #[schema(max_length = 1000)]
    pub query: String,
    /// The shopper.
    pub user: Option<String>,
    /// The candidates (at most 1,000).
    #[schema(max_items = 1000)]
    pub candidates: Vec<CandidateBody>,
    /// Number of hits (default 10).
    #[schema(minimum = 1, maximum = 10000)]
    pub k: Option<usize>,
    /// Rank as of this time (default now).
    pub as_of: Option<Timestamp>,
    /// Reranking mode (default auto).
    pub rerank: Option<RerankName>,
    /// Restrictions; candidates outside them are dropped.
    pub filters: Option<FiltersBody>,
}

impl RerankBody {
    /// The library request and candidates, after the service's own limits.
    pub fn into_request(
        self,
        limits: &Limits,
    ) -> Result<(crate::SearchRequest, Vec<crate::ExternalCandidate>), ApiError> {
        check_query(&self.query, limits)?;
        check_count("candidates", self.candidates.len(), limits.max_candidates)?;
        let mut req = crate::SearchRequest::new(self.query);
        if let Some(k) = self.k {
            req.k = k;
        }
        req.user = self.user;
        req.as_of = self.as_of.map(|t| t.seconds("as_of")).transpose()?;
        if let Some(r) = self.rerank {
            req.rerank = r.into();
        }
        if let Some(f) = self.filters {
            req.filters = f.into();
        }
        check_filters(&req.filters)?;
        let cands = self
            .candidates
            .into_iter()
            .map(|c| crate::ExternalCandidate {
                id: c.id,
                score: c.score,
            })
            .collect();
        Ok((req, cands))
    }
}

/// The answer of POST /rerank.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RerankResponseBody {
    /// The reranked hits.
    pub hits: Vec<HitBody>,
    /// Candidate ids not in the index.
    pub unknown: Vec<String>,
}

/// POST /embed: texts to embed with the index's model (query vectors for a
/// retrieval tier whose product vectors came from `shelfrank embed`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedBody {
    /// The texts (at most 1,000, each at most the query length limit).
    #[schema(max_items = 1000)]
    pub texts: Vec<String>,
}

impl EmbedBody {
    /// Checks the service's limits.
    pub fn check(&self, limits: &Limits) -> Result<(), ApiError> {
        check_count("texts", self.texts.len(), limits.max_candidates)?;
        for (i, t) in self.texts.iter().enumerate() {
            if t.chars().count() > limits.max_query_chars {
                return Err(ApiError::bad_field(
                    format!("texts[{i}]"),
                    format!("longer than {} characters", limits.max_query_chars),
                ));
            }
        }
        Ok(())
    }
}

/// The answer of POST /embed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbedResponse {
    /// One unit-length vector per text, in order.
    pub embeddings: Vec<Vec<f32>>,
    /// The model's name.
    pub model: String,
    /// SHA-256 of its `model.safetensors`: the `model.sha256` of `shelfrank embed`
    /// parts whose vectors share this embedding space.
    pub sha256: String,
    /// Vector width.
    pub dim: usize,
}

/// How the order of `documents` is taken in POST /rerank/documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalOrder {
    /// Best first: the position is the retrieval rank (OpenSearch sends the
    /// response page in order).
    #[default]
    Ranked,
    /// No order: every document gets the same retrieval prior (Elasticsearch's
    /// `text_similarity_reranker` sends its window shard by shard).
    None,
}

/// POST /rerank/documents: a Cohere-style rerank call, the shape OpenSearch's
/// ml-commons rerank connector (`connector.pre_process.cohere.rerank`) and
/// Elasticsearch's `custom` inference service (rerank task) send. The documents
/// are product ids (the retrieval tier's `product_id` field).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankDocumentsBody {
    /// The query the documents were found for.
    #[schema(max_length = 1000)]
    pub query: String,
    /// Product ids, one per document (at most 1,000). An empty, unknown or repeated
    /// id is not an error: it gets a score below every known product's.
    #[schema(max_items = 1000)]
    pub documents: Vec<String>,
    /// Return only the best `top_n` results (default: all).
    pub top_n: Option<usize>,
    /// The shopper, for a direct caller (the search engines send none).
    pub user: Option<String>,
    /// Whether the documents' order is their retrieval rank (default ranked).
    pub retrieval_order: Option<RetrievalOrder>,
    /// Accepted from Cohere-style clients and ignored.
    #[allow(dead_code)] // accepted so that such a body is not refused; nothing to do with it
    pub model: Option<String>,
    /// Accepted from Cohere-style clients and ignored (documents are not echoed).
    #[allow(dead_code)] // as `model`
    pub return_documents: Option<bool>,
}

/// One document's score in a POST /rerank/documents answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentScore {
    /// The document's position in the request.
    pub index: usize,
    /// Its score (higher is better): the reranked score of a known product, or one
    /// below all of them for an empty, unknown or repeated id.
    pub relevance_score: f64,
    /// The product id, as sent.
    pub id: String,
}

/// The answer of POST /rerank/documents: every document (or the best `top_n`),
/// best first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RerankDocumentsResponse {
    /// One entry per document, best first (ties by position).
    pub results: Vec<DocumentScore>,
}

impl RerankDocumentsBody {
    /// The library request and candidates (each distinct usable id once, at its
    /// first position), after the service's limits.
    pub fn to_request(
        &self,
        limits: &Limits,
    ) -> Result<(crate::SearchRequest, Vec<crate::ExternalCandidate>), ApiError> {
        check_query(&self.query, limits)?;
        check_count("documents", self.documents.len(), limits.max_candidates)?;
        let mut req = crate::SearchRequest::new(self.query.clone());
        req.k = self.documents.len().max(1);
        req.user = self.user.clone();
        let equal = self.retrieval_order == Some(RetrievalOrder::None);
        let mut seen = std::collections::HashSet::new();
        let cands = self
            .documents
            .iter()
            .filter(|id| {
                !id.trim().is_empty()
                    && crate::catalog::id_control_char(id).is_none()
                    && seen.insert(id.as_str())
            })
            .map(|id| crate::ExternalCandidate {
                id: id.clone(),
                score: equal.then_some(1.0),
            })
            .collect();
        Ok((req, cands))
    }

    /// Every document's score from the reranked hits (see [`DocumentScore`]),
    /// best first, cut to `top_n`.
    pub fn answer(&self, hits: &[crate::Hit]) -> RerankDocumentsResponse {
        let by_id: std::collections::HashMap<&str, f64> = hits
            .iter()
            .map(|h| (h.id.as_str(), f64::from(h.score)))
            .collect();
        let floor = by_id
            .values()
            .copied()
            .filter(|s| s.is_finite())
            .fold(f64::INFINITY, f64::min);
        let below = if floor.is_finite() { floor - 1.0 } else { -1.0 };
        let mut first = std::collections::HashSet::new();
        let mut results: Vec<DocumentScore> = self
            .documents
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let known = by_id
                    .get(id.as_str())
                    .copied()
                    .filter(|s| s.is_finite() && first.insert(id.as_str()));
                DocumentScore {
                    index,
                    relevance_score: known.unwrap_or(below),
                    id: id.clone(),
                }
            })
            .collect();
        results.sort_by(|a, b| {
            b.relevance_score
                .total_cmp(&a.relevance_score)
                .then(a.index.cmp(&b.index))
        });
        if let Some(n) = self.top_n {
            results.truncate(n);
        }
        RerankDocumentsResponse { results }
    }
}

/// A string or an integer (taken as its decimal text).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used: events are read by the library's reader
pub enum IdValue {
    /// Text.
    Text(String),
    /// An integer.
    Number(i64),
}

/// A shopper event, as one line of an events JSONL file (see
/// `shelfrank::profile::events`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[allow(dead_code)] // only its schema is used: events are read by the library's reader
pub struct EventBody {
    /// The shopper.
    pub user: IdValue,
    /// The product id; it must be in the index's catalog.
    pub item: IdValue,
    /// What the shopper did.
    pub kind: EventKindName,
    /// When: Unix seconds or a timestamp text, from 1970 to a day after now.
    pub ts: Timestamp,
    /// How many items (above 0), for cart and purchase events.
    #[schema(exclusive_minimum = 0)]
    pub quantity: Option<f64>,
    /// The event's own id.
    pub id: Option<IdValue>,
    /// The search text that led to the event.
    pub query: Option<String>,
    /// The 0-based rank the item was shown at.
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    pub position: Option<u32>,
}

/// What a shopper did with an item.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // only its schema is used
pub enum EventKindName {
    /// Shown, or its page opened.
    View,
    /// Clicked in a result list.
    Click,
    /// Put in the cart.
    Cart,
    /// Bought.
    Purchase,
}

/// POST /events.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsBody {
    /// The events, stored all or none (at most 10,000).
    #[schema(value_type = Vec<EventBody>, max_items = 10000)]
    pub events: Vec<serde_json::Value>,
}

/// The fields an event object may have: the events reader's (see
/// `shelfrank::profile::events`), which ignores others in files; the service
/// refuses them, as it refuses unknown fields everywhere.
pub const EVENT_FIELDS: [&str; 8] = [
    "user", "item", "kind", "ts", "quantity", "id", "query", "position",
];

/// The fields a product of PUT /products may have (a catalog file's JSONL
/// fields; a catalog file ignores others, a request refuses them).
pub const PRODUCT_FIELDS: [&str; 8] = [
    "id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "attributes",
    "popularity",
];

/// The answer of POST /events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventsResponse {
    /// Events stored (durably).
    pub accepted: usize,
    /// Events skipped because an event with the same `id` is stored already (a
    /// retried request), or repeated in the request.
    pub duplicates: usize,
    /// Events with an `id` skipped because their shopper was forgotten after they
    /// happened (without an `id`, such an event refuses the request instead).
    pub forgotten: usize,
}

/// The answer of DELETE /users/{id}.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForgetResponse {
    /// Events removed.
    pub forgotten: usize,
}

/// A catalog product.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductBody {
    /// Product id: text (not blank), or an integer (read as its decimal text), as
    /// in catalog files.
    #[schema(value_type = IdValue)]
    pub id: String,
    /// Title (not blank).
    #[schema(pattern = r"\S")]
    pub title: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Category path segments from the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<String>,
    /// Brand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// Price, >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub price: Option<f64>,
    /// Attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// A popularity signal, >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub popularity: Option<f64>,
}

impl From<&Product> for ProductBody {
    fn from(p: &Product) -> Self {
        ProductBody {
            id: p.id.clone(),
            title: p.title.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            brand: p.brand.clone(),
            price: p.price,
            attributes: p
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            popularity: p.popularity,
        }
    }
}

impl From<ProductBody> for Product {
    fn from(p: ProductBody) -> Self {
        let mut out = Product::new(p.id, p.title);
        out.description = p.description;
        out.category = p.category;
        out.brand = p.brand;
        out.price = p.price;
        out.attributes = p.attributes.into_iter().collect();
        out.popularity = p.popularity;
        out
    }
}

/// PUT /products.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductsBody {
    /// The products, in the catalog's JSON form (see `ProductBody`; `category` may
    /// also be one "A > B" string, as in catalog files).
    #[schema(value_type = Vec<ProductBody>)]
    pub products: Vec<serde_json::Value>,
}

/// Answer to PUT /products.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductsResponse {
    /// Products stored.
    pub upserted: usize,
}

/// Answer to DELETE /products/{id}.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeleteResponse {
    /// Always true (an unknown id is a 404).
    pub deleted: bool,
}

/// GET /health.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `"ok"`.
    pub status: String,
}

/// GET /ready.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// True when an index is open.
    pub ready: bool,
    /// The generation served (`gen-000003` is 3; 0 for an index from before generations).
    pub generation: u64,
    /// Products in it.
    pub products: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> (StatusCode, Option<String>) {
        match parse_json::<SearchBody>(body.as_bytes()) {
            Ok(_) => (StatusCode::OK, None),
            Err(e) => (e.status, e.body.field),
        }
    }

    #[test]
    fn bad_bodies_name_the_field_by_its_path() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(field_of(r#"{"query": "q"}"#), (StatusCode::OK, None));
        assert_eq!(
            field_of(r#"{"query": "q", "k": "2"}"#),
            (bad, Some("k".into()))
        );
        assert_eq!(
            field_of(r#"{"query": "q", "filters": {"max_price": "9"}}"#),
            (bad, Some("filters.max_price".into()))
        );
        assert_eq!(
            field_of(r#"{"query": "q", "filters": {"attributes": {"a": 1}}}"#),
            (bad, Some("filters.attributes.a".into()))
        );
        assert_eq!(field_of(r#"{"query": "q""#), (bad, None));
        assert_eq!(field_of(r#"{"query": "q"} {}"#), (bad, None));
        assert_eq!(field_of(""), (bad, None));
    }

    #[test]
    fn requests_map_onto_the_library_request() {
        let body: SearchBody = parse_json(
            br#"{"query": "drill", "k": 3, "mode": "bm25", "rerank": "off", "user": "u1",
                 "as_of": "2023-11-14T22:15:53", "diversity": 0.5,
                 "filters": {"category": "Tools > Drills", "attributes": {"volts": "18"}}}"#,
        )
        .unwrap();
        let req = body.into_request(&Limits::default()).unwrap();
        assert_eq!(
            (req.k, req.mode, req.rerank),
            (3, Mode::Bm25, RerankMode::Off)
        );
        assert_eq!(req.as_of, Some(1_700_000_153));
        assert_eq!(
            req.filters.category_prefix,
            Some(vec!["Tools".to_string(), "Drills".to_string()])
        );
        assert_eq!(req.filters.attributes, vec![("volts".into(), "18".into())]);
        let limits = Limits {
            max_query_chars: 3,
            ..Limits::default()
        };
        let long: SearchBody = parse_json(br#"{"query": "drill"}"#).unwrap();
        let err = long.into_request(&limits).unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("query"));
    }
}
