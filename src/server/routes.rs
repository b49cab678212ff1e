//! The router: each endpoint parses its body, calls one library method on the
//! blocking pool (reads and writes through [`Shared`](super::state::Shared)), and
//! answers JSON. The OpenAPI document is generated from these handlers and the
//! types in [`super::api`].

use std::time::Instant;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{middleware, Json, Router};
use subtle::ConstantTimeEq;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api::*;
use super::error::{ApiError, ErrorBody};
use super::metrics;
use super::state::{generation_of, AppState};
use crate::catalog::{read_catalog_from, Format, ReadOptions};
use crate::error::{ErrorKind, LocatedError};
use crate::profile::events::{read_events_from, EventReadOptions};

/// The service's routes, with metrics, compression and the request timeout.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/search", post(search))
        .route("/rerank", post(rerank))
        .route("/rerank/documents", post(rerank_documents))
        .route("/embed", post(embed))
        .route("/events", post(events))
        .route("/users/{id}", delete(forget))
        .route("/products", put(put_products))
        .route("/products/{id}", get(get_product).delete(delete_product))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// The OpenAPI document of the service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shelfrank",
        description = "Hybrid product search (BM25 + embeddings, fused) with personalised reranking. Write endpoints need `Authorization: Bearer TOKEN` when the server was started with --token-file."
    ),
    paths(search, rerank, rerank_documents, embed, events, forget, put_products, delete_product, get_product, health, ready, metrics_text, openapi),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// A write's permission: with a token configured, the request must carry
/// `Authorization: Bearer TOKEN` (compared in constant time); 401 otherwise.
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = &state.config.token else {
            return Ok(Authorized);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(g) if bool::from(g.as_bytes().ct_eq(token.as_bytes())) => Ok(Authorized),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs the header Authorization: Bearer TOKEN with the server's token",
            )),
        }
    }
}

/// Search the catalog (hybrid by default), personalised when `user` is given.
#[utoipa::path(post, path = "/search", request_body = SearchBody,
    responses(
        (status = 200, description = "Hits, best first", body = SearchResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn search(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    let req = body.into_request(&state.config.limits)?;
    let res = state
        .read(move |engine| {
            let t = Instant::now();
            let hits = engine.search(&req)?;
            let took_ms = t.elapsed().as_secs_f64() * 1000.0;
            Ok(SearchResponse {
                hits: hits.iter().map(|h| HitBody::of(engine, h)).collect(),
                took_ms,
            })
        })
        .await?;
    Ok(Json(res))
}

/// Rerank another engine's candidates for a query (and shopper).
#[utoipa::path(post, path = "/rerank", request_body = RerankBody,
    responses(
        (status = 200, description = "Reranked hits and the unknown ids", body = RerankResponseBody),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn rerank(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RerankBody>,
) -> Result<Json<RerankResponseBody>, ApiError> {
    let (req, cands) = body.into_request(&state.config.limits)?;
    let res = state
        .read(move |engine| {
            let res = engine.rerank(&req, &cands)?;
            Ok(RerankResponseBody {
                hits: res.hits.iter().map(|h| HitBody::of(engine, h)).collect(),
                unknown: res.unknown,
            })
        })
        .await?;
    Ok(Json(res))
}

/// Rerank documents (product ids) sent by a search engine's rerank stage:
/// OpenSearch's ml-commons connector with `connector.pre_process.cohere.rerank`,
/// or Elasticsearch's `custom` inference service for a `text_similarity_reranker`.
/// Every document gets a score; see README "Scaling out".
#[utoipa::path(post, path = "/rerank/documents", request_body = RerankDocumentsBody,
    responses(
        (status = 200, description = "Every document's score, best first", body = RerankDocumentsResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn rerank_documents(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RerankDocumentsBody>,
) -> Result<Json<RerankDocumentsResponse>, ApiError> {
    let (req, cands) = body.to_request(&state.config.limits)?;
    let res = state
        .read(move |engine| {
            let hits = if cands.is_empty() {
                Vec::new()
            } else {
                engine.rerank(&req, &cands)?.hits
            };
            Ok(body.answer(&hits))
        })
        .await?;
    Ok(Json(res))
}

/// Embed texts with the index's model: query vectors for a retrieval tier
/// that holds the product vectors of `shelfrank embed` (one embedding space).
#[utoipa::path(post, path = "/embed", request_body = EmbedBody,
    responses(
        (status = 200, description = "One vector per text, and the model", body = EmbedResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn embed(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmbedBody>,
) -> Result<Json<EmbedResponse>, ApiError> {
    body.check(&state.config.limits)?;
    let res = state
        .read(move |engine| {
            let texts: Vec<&str> = body.texts.iter().map(String::as_str).collect();
            let model = &engine.manifest().model;
            Ok(EmbedResponse {
                embeddings: engine.embed_queries(&texts, &|_| {})?,
                model: model.name.clone(),
                sha256: model.sha256.clone(),
                dim: model.dim,
            })
        })
        .await?;
    Ok(Json(res))
}

/// Record shopper events: all or none, durable when answered.
#[utoipa::path(post, path = "/events", request_body = EventsBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored", body = EventsResponse),
        (status = 400, description = "Bad request; nothing stored", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn events(
    State(state): State<AppState>,
    _auth: Authorized,
    ApiJson(body): ApiJson<EventsBody>,
) -> Result<Json<EventsResponse>, ApiError> {
    let limits = &state.config.limits;
    if body.events.len() > limits.max_events {
        return Err(ApiError::bad_field(
            "events",
            format!(
                "{} events; at most {} are allowed per request",
                body.events.len(),
                limits.max_events
            ),
        ));
    }
    let lines = jsonl_lines("events", "an event", &body.events, &EVENT_FIELDS)?;
    // Which events carry an `id` (an idempotency key): see below.
    let keyed: Vec<bool> = body
        .events
        .iter()
        .map(|e| e.get("id").is_some_and(|v| !v.is_null()))
        .collect();
    if body.events.is_empty() {
        return Ok(Json(EventsResponse {
            accepted: 0,
            duplicates: 0,
            forgotten: 0,
        }));
    }
    let answer = state
        .write(move |engine| {
            let batch = read_events_from(
                lines.as_bytes(),
                "events",
                &EventReadOptions::default(),
                &|id: &str| engine.product(id).is_some(),
            )
            .map_err(|e| line_error("events", &e))?;
            // Events with an `id` are stored once however often a client retries
            // them; the others of the same request get ids of their own, never
            // seen before (a request is stored all or none either way).
            if !keyed.iter().any(|&k| k) {
                engine.record_many(&batch.events)?;
                return Ok(EventsResponse {
                    accepted: batch.events.len(),
                    duplicates: 0,
                    forgotten: 0,
                });
            }
            let ids: Vec<u64> = batch
                .ids
                .iter()
                .zip(&keyed)
                .map(|(&id, &k)| if k { id } else { fresh_event_id() })
                .collect();
            let stored = engine.record_identified(&batch.events, &ids)?;
            Ok(EventsResponse {
                accepted: stored.stored,
                duplicates: stored.duplicates,
                forgotten: stored.forgotten,
            })
        })
        .await?;
    Ok(Json(answer))
}

/// The items of a request's list (`events`, `products`) as JSON lines, for the
/// library's file readers: each must be an object holding only `fields`; line
/// i+1 is `list[i]`.
fn jsonl_lines(
    list: &str,
    what: &str,
    items: &[serde_json::Value],
    fields: &[&str],
) -> Result<String, ApiError> {
    let mut lines = String::new();
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            return Err(ApiError::bad_field(
                format!("{list}[{i}]"),
                format!("{what} is a JSON object"),
            ));
        };
        if let Some(k) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(ApiError::bad_field(
                format!("{list}[{i}].{k}"),
                format!("unknown field `{k}`, expected one of {fields:?}"),
            ));
        }
        lines.push_str(&item.to_string());
        lines.push('\n');
    }
    Ok(lines)
}

/// A file reader's error on the lines of [`jsonl_lines`], named by the request
/// field it came from (`list[i].field`): 400 for the caller's faults, 500 else.
fn line_error<K: ErrorKind>(list: &str, e: &LocatedError<K>) -> ApiError {
    let at = format!("{list}[{}]", e.line().unwrap_or(1).saturating_sub(1));
    let field = match e.field() {
        Some(f) => format!("{at}.{f}"),
        None => at.clone(),
    };
    let status = if e.is_caller_fault() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut api = ApiError::new(status, format!("{field}: {}", e.kind()));
    api.body.field = Some(field);
    api
}

/// An event id no other event has: the process's start time and id and a counter,
/// hashed (for events without an idempotency key in a request where others have one).
fn fresh_event_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{nanos}\u{1f}{}", std::process::id())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    crate::store::durable::fnv1a64(format!("server\u{1f}{start}\u{1f}{n}").as_bytes())
}

/// Forget a shopper: remove every stored event of theirs, durably.
#[utoipa::path(delete, path = "/users/{id}",
    params(("id" = String, Path, description = "The shopper")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Forgotten", body = ForgetResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn forget(
    State(state): State<AppState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<ForgetResponse>, ApiError> {
    let forgotten = state.write(move |engine| Ok(engine.forget(&id)?)).await?;
    Ok(Json(ForgetResponse { forgotten }))
}

/// Add products or replace those with the same ids: checked by the catalog
/// reader's rules (all or none), embedded, durable when answered, and found by the
/// very next search.
#[utoipa::path(put, path = "/products", request_body = ProductsBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored", body = ProductsResponse),
        (status = 400, description = "Bad request; nothing stored", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn put_products(
    State(state): State<AppState>,
    _auth: Authorized,
    ApiJson(body): ApiJson<ProductsBody>,
) -> Result<Json<ProductsResponse>, ApiError> {
    let limits = &state.config.limits;
    let n = body.products.len();
    if n == 0 || n > limits.max_products {
        return Err(ApiError::bad_field(
            "products",
            format!(
                "{n} products; give 1 to {} per request",
                limits.max_products
            ),
        ));
    }
    // Through the catalog's JSONL reader: the same rules and messages as a
    // catalog file, line i+1 being products[i].
    let lines = jsonl_lines("products", "a product", &body.products, &PRODUCT_FIELDS)?;
    let opts = ReadOptions {
        format: Some(Format::Jsonl),
        ..ReadOptions::default()
    };
    let catalog = read_catalog_from(lines.as_bytes(), "products", &opts)
        .map_err(|e| line_error("products", &e))?;
    let products = catalog.products;
    let upserted = state
        .write(move |engine| Ok(engine.upsert_products(products)?))
        .await?;
    state.merge_soon();
    Ok(Json(ProductsResponse { upserted }))
}

/// Delete a product: durable when answered; never returned again.
#[utoipa::path(delete, path = "/products/{id}",
    params(("id" = String, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = DeleteResponse),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
        (status = 503, description = "Busy: retry after Retry-After seconds", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
    ))]
async fn delete_product(
    State(state): State<AppState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let name = id.clone();
    let deleted = state
        .write(move |engine| Ok(engine.delete_product(&id)?))
        .await?;
    if !deleted {
        return Err(ApiError::not_found(format!(
            "no product {name:?} in the index"
        )));
    }
    state.merge_soon();
    Ok(Json(DeleteResponse { deleted: true }))
}

/// A product of the served catalog.
#[utoipa::path(get, path = "/products/{id}",
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = ProductBody),
        (status = 404, description = "No such product", body = ErrorBody),
    ))]
async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProductBody>, ApiError> {
    let engine = state.engine.load();
    engine
        .product(&id)
        .map(|p| Json(ProductBody::from(p)))
        .ok_or_else(|| ApiError::not_found(format!("no product {id:?} in the index")))
}

/// The process is up.
#[utoipa::path(get, path = "/health",
    responses((status = 200, description = "Up", body = HealthResponse)))]
async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

/// An index is open and served.
#[utoipa::path(get, path = "/ready",
    responses((status = 200, description = "Ready", body = ReadyResponse)))]
async fn ready(State(state): State<AppState>) -> Json<ReadyResponse> {
    let engine = state.engine.load();
    Json(ReadyResponse {
        ready: true,
        generation: generation_of(&engine),
        products: engine.len(),
    })
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> Response {
    state.metrics.set_query_path(&state.engine.load());
    let text = state
        .metrics
        .render(state.in_flight(), state.config.max_inflight);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Gives every error answer the JSON body: those made outside the handlers (the
/// timeout's 503, axum's rejection of a bad path parameter) come with an empty or
/// plain-text body.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = if !text.is_empty() {
        text
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        "the request took longer than the server's timeout".to_string()
    } else {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    };
    let mut out = ApiError::new(status, error).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see GET /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method; see GET /openapi.json",
    )
}
