//! Keyword retrieval: BM25 over title, description, category, brand and
//! attribute values, with English stemming.
//!
//! The only module that names tantivy. Queries are never parsed as a query
//! language: the shopper's text goes through the same analyzer as the documents
//! (split on non-alphanumerics, lower-cased, English stop words removed, Snowball
//! English stemmer), and each resulting term becomes a `SHOULD` clause on every
//! field, so quotes, colons, brackets, `AND`, emoji or 10,000 characters are all
//! just words (or nothing) and can never be a syntax error.
//!
//! Scoring is tantivy's BM25 (k1 = 1.2, b = 0.75; Robertson & Zaragoza, "The
//! Probabilistic Relevance Framework: BM25 and Beyond", 2009) summed over fields,
//! with the title's clauses boosted by [`TITLE_BOOST`].

mod readonly;

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::query::{
    Bm25StatisticsProvider, Bm25Weight, BooleanQuery, BoostQuery, EnableScoring, Occur, Query,
    Scorer, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{
    doc, DocAddress, DocSet, Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term,
    TERMINATED,
};

use crate::catalog::Product;
use crate::error::{Error, Result};
use crate::fuse::{sort_candidates, Candidate};

/// Weight of a title match relative to a match in another field. Titles are
/// written to describe the product; descriptions and attributes are noisier. 2.0 is
/// the usual e-commerce starting point (Elasticsearch's `title^2` examples).
pub const TITLE_BOOST: f32 = 2.0;

/// At most this many distinct query terms are used; the rest of a very long query
/// is ignored. A shopper's query has a handful; this bounds the cost of pasted text.
pub const MAX_QUERY_TERMS: usize = 64;

/// Name under which the analyzer is registered with tantivy.
const ANALYZER: &str = "shelfrank_en";

/// Tokens longer than this many bytes are dropped (tantivy's default for `en_stem`).
const MAX_TOKEN_BYTES: usize = 40;

/// Memory budget of the index writer (tantivy's minimum is 15 MB per thread).
const WRITER_MEMORY: usize = 64 << 20;

#[derive(Clone, Copy)]
struct Fields {
    /// The product id, stored: written for tools that read the tantivy index directly
    /// (and part of the format-1 schema, which opening checks); shelfrank itself maps
    /// hits to products through `ord`.
    id: Field,
    ord: Field,
    title: Field,
    description: Field,
    category: Field,
    brand: Field,
    attributes: Field,
}

/// The keyword index.
#[derive(Clone)]
pub struct TextIndex {
    reader: IndexReader,
    fields: Fields,
    /// The document of each product, by ordinal (the reader never reloads, so its
    /// segments stay the ones this map was read from).
    docs: Vec<DocAddress>,
    /// The directory it was opened from (`None` in memory): failures of an opened
    /// index are reported as damage to it.
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextIndex")
            .field("docs", &self.reader.searcher().num_docs())
            .finish()
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        ord: b.add_u64_field("ord", FAST),
        title: b.add_text_field("title", text.clone()),
        description: b.add_text_field("description", text.clone()),
        category: b.add_text_field("category", text.clone()),
        brand: b.add_text_field("brand", text.clone()),
        attributes: b.add_text_field("attributes", text),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder
            .filter(stop)
            .filter(Stemmer::new(Language::English))
            .build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

fn tv(e: tantivy::TantivyError) -> Error {
    Error::TextIndex(e.to_string())
}

/// Runs `f`, a piece of work inside tantivy on the index in `dir` (`None`: in
/// memory), turning a panic into an error, and for an index on disk every failure
/// into [`Error::CorruptIndex`] naming the directory: a published index does not
/// change, so tantivy failing on it means its files are damaged. tantivy asserts
/// on some malformed inputs instead of returning an error; the panic message still
/// goes to the panic hook (stderr by default) before it is caught here.
fn guarded<T>(dir: Option<&Path>, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(Error::TextIndex(format!("tantivy panicked: {message}")))
    });
    match (result, dir) {
        (Err(Error::TextIndex(reason)), Some(dir)) => Err(Error::corrupt(
            dir,
            format!("the keyword index failed while {what}: {reason}"),
        )),
        (result, _) => result,
    }
}

/// Product ordinal -> document, from the `ord` fast field of every segment. Every
/// ordinal below the document count must appear exactly once (deleted documents
/// are skipped; shelfrank never deletes), or the keyword index is not one shelfrank
/// wrote for this catalog.
fn document_map(searcher: &Searcher) -> Result<Vec<DocAddress>> {
    let n = searcher.num_docs() as usize;
    let bad = |what: String| Error::TextIndex(format!("the keyword index is inconsistent: {what}"));
    let mut docs = vec![None; n];
    for (segment_ord, segment) in searcher.segment_readers().iter().enumerate() {
        let column = segment.fast_fields().u64("ord").map_err(tv)?;
        for doc_id in segment.doc_ids_alive() {
            let ord = column
                .first(doc_id)
                .ok_or_else(|| bad(format!("document {doc_id} has no ordinal")))?;
            let slot = docs
                .get_mut(ord as usize)
                .ok_or_else(|| bad(format!("ordinal {ord} is beyond the {n} documents")))?;
            if slot.is_some() {
                return Err(bad(format!("ordinal {ord} appears twice")));
            }
            *slot = Some(DocAddress::new(segment_ord as u32, doc_id));
        }
    }
    if let Some(missing) = docs.iter().position(Option::is_none) {
        return Err(bad(format!("no document has ordinal {missing}")));
    }
    Ok(docs.into_iter().flatten().collect())
}

/// A product's analysed text per searched field (title, description, category,
/// brand, attributes): term frequencies and token counts, for scoring a product
/// that is not in the index ([`TextIndex::score_documents`]).
#[derive(Debug, Clone, Default)]
pub struct DocumentTerms {
    fields: [FieldTerms; 5],
}

#[derive(Debug, Clone, Default)]
struct FieldTerms {
    tf: HashMap<String, u32>,
    len: u32,
}

impl TextIndex {
    /// Indexes `products` (ordinal = position) in `dir`, or in memory when `dir` is
    /// `None`. `progress` is called with the number of products added so far.
    pub fn build(
        products: &[Product],
        dir: Option<&Path>,
        progress: &dyn Fn(usize),
    ) -> Result<Self> {
        let (schema, fields) = schema();
        let index = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
                Index::create_in_dir(d, schema).map_err(tv)?
            }
            None => Index::create_in_ram(schema),
        };
        index.tokenizers().register(ANALYZER, analyzer());
        let mut writer = index
            .writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY)
            .map_err(tv)?;
        for (ord, p) in products.iter().enumerate() {
            let mut d = doc!(
                fields.id => p.id.as_str(),
                fields.ord => ord as u64,
                fields.title => p.title.as_str(),
            );
            if let Some(desc) = &p.description {
                d.add_text(fields.description, desc);
            }
            if !p.category.is_empty() {
                d.add_text(fields.category, p.category.join(" "));
            }
            if let Some(brand) = &p.brand {
                d.add_text(fields.brand, brand);
            }
            if !p.attributes.is_empty() {
                let values: Vec<&str> = p.attributes.values().map(String::as_str).collect();
                d.add_text(fields.attributes, values.join(" "));
            }
            writer.add_document(d).map_err(tv)?;
            if ord % 1000 == 999 {
                progress(ord + 1);
            }
        }
        writer.commit().map_err(tv)?;
        writer.wait_merging_threads().map_err(tv)?;
        progress(products.len());
        Self::from_index(index, fields)
    }

    /// Opens the index written by [`TextIndex::build`] in `dir`, read-only: nothing
    /// is created, so a directory without write permission opens too. Damaged files
    /// are a [`Error::CorruptIndex`] naming `dir`, never a panic.
    pub fn open(dir: &Path) -> Result<Self> {
        guarded(Some(dir), "opening it", || {
            let directory = readonly::ReadOnlyDirectory::open(dir).map_err(tv)?;
            let index = Index::open(directory).map_err(tv)?;
            let (expected, fields) = schema();
            if index.schema() != expected {
                return Err(Error::corrupt(
                    dir,
                    "the keyword index has an unexpected schema",
                ));
            }
            index.tokenizers().register(ANALYZER, analyzer());
            let mut text = Self::from_index(index, fields)?;
            text.dir = Some(dir.to_path_buf());
            Ok(text)
        })
    }

    fn from_index(index: Index, fields: Fields) -> Result<Self> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tv)?;
        let docs = document_map(&reader.searcher())?;
        Ok(TextIndex {
            reader,
            fields,
            docs,
            dir: None,
        })
    }

    /// [`guarded`] for this index.
    fn guarded<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        guarded(self.dir.as_deref(), what, f)
    }

    /// Number of indexed products.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// True when no product is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct analysed terms of `text`, in order of first appearance, at most
    /// [`MAX_QUERY_TERMS`].
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut seen = HashSet::new();
        let mut terms = Vec::new();
        while stream.advance() {
            let t = stream.token().text.clone();
            if seen.insert(t.clone()) {
                terms.push(t);
                if terms.len() == MAX_QUERY_TERMS {
                    break;
                }
            }
        }
        terms
    }

    /// All analysed terms of `text` in order, repeats kept (for phrase features).
    pub fn analyze_all(&self, text: &str) -> Vec<String> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        terms
    }

    /// The searched fields with their boosts, the title first.
    fn weighted_fields(&self) -> [(Field, f32); 5] {
        let f = self.fields;
        [
            (f.title, TITLE_BOOST),
            (f.description, 1.0),
            (f.category, 1.0),
            (f.brand, 1.0),
            (f.attributes, 1.0),
        ]
    }

    /// The query's BM25 reference score: what the best conceivable product would
    /// score, holding each analysed term of `text` once in every field where that term
    /// occurs in some product, each field of average length (so a term adds `boost x
    /// idf` per such field). A term no product has counts once in the title, at full
    /// idf. It depends only on the query and the collection's statistics, never on
    /// which products matched, so `score / reference` is on one scale for every query
    /// (1 for a product whose title is the query, in a title-only catalog) and a lone
    /// weak match stays weak. 0 for a query without terms. Computed with tantivy's own
    /// BM25 weights, at one dictionary lookup per term and field.
    pub fn reference_score(&self, text: &str) -> Result<f32> {
        self.guarded("scoring a query", || {
            let terms = self.analyze(text);
            let searcher = self.reader.searcher();
            let docs = searcher.total_num_docs().map_err(tv)?;
            if terms.is_empty() || docs == 0 {
                return Ok(0.0);
            }
            // The fieldnorm id of an average-length value of each field.
            let mut fields = Vec::new();
            for (field, boost) in self.weighted_fields() {
                let tokens = searcher.total_num_tokens(field).map_err(tv)?;
                let average = (tokens as f64 / docs as f64).round() as u32;
                fields.push((field, boost, FieldNormReader::fieldnorm_to_id(average)));
            }
            let once = |field: Field, boost: f32, norm: u8, t: &str| -> Result<f32> {
                let term = Term::from_field_text(field, t);
                let weight = Bm25Weight::for_terms(&searcher, &[term]).map_err(tv)?;
                Ok(weight.boost_by(boost).score(norm, 1))
            };
            let mut total = 0.0;
            for t in &terms {
                let mut found = false;
                for &(field, boost, norm) in &fields {
                    if searcher
                        .doc_freq(&Term::from_field_text(field, t))
                        .map_err(tv)?
                        > 0
                    {
                        found = true;
                        total += once(field, boost, norm, t)?;
                    }
                }
                if !found {
                    let (title, boost, norm) = fields[0];
                    total += once(title, boost, norm, t)?;
                }
            }
            Ok(total)
        })
    }

    fn build_query(&self, terms: &[String]) -> BooleanQuery {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in terms {
            for (field, boost) in self.weighted_fields() {
                let q = TermQuery::new(
                    Term::from_field_text(field, t),
                    IndexRecordOption::WithFreqs,
                );
                let q: Box<dyn Query> = if boost != 1.0 {
                    Box::new(BoostQuery::new(Box::new(q), boost))
                } else {
                    Box::new(q)
                };
                clauses.push((Occur::Should, q));
            }
        }
        BooleanQuery::new(clauses)
    }

    /// The exact BM25 score for `text` of each of the products `ords` that matches a
    /// query term (the others are left out), as [`search`](Self::search) would score
    /// it: tantivy's own scorer seeks each product's document instead of collecting
    /// over the whole index. In ordinal order.
    pub fn scores_of(&self, text: &str, ords: &[u32]) -> Result<Vec<Candidate>> {
        self.guarded("scoring products", || {
            let terms = self.analyze(text);
            if terms.is_empty() || ords.is_empty() {
                return Ok(Vec::new());
            }
            let query = self.build_query(&terms);
            let searcher = self.reader.searcher();
            let weight = query
                .weight(EnableScoring::enabled_from_searcher(&searcher))
                .map_err(tv)?;
            let mut targets: Vec<(DocAddress, u32)> = ords
                .iter()
                .filter_map(|&o| Some((*self.docs.get(o as usize)?, o)))
                .collect();
            targets.sort_unstable_by_key(|(a, _)| (a.segment_ord, a.doc_id));
            targets.dedup();
            let mut out = Vec::with_capacity(targets.len());
            for group in targets.chunk_by(|a, b| a.0.segment_ord == b.0.segment_ord) {
                let segment = searcher.segment_reader(group[0].0.segment_ord);
                let mut scorer = weight.scorer(segment, 1.0).map_err(tv)?;
                for (addr, ord) in group {
                    let mut doc = scorer.doc();
                    if doc < addr.doc_id {
                        doc = scorer.seek(addr.doc_id);
                    }
                    if doc == TERMINATED {
                        break;
                    }
                    if doc == addr.doc_id {
                        out.push(Candidate {
                            ord: *ord,
                            score: scorer.score(),
                        });
                    }
                }
            }
            out.sort_unstable_by_key(|c| c.ord);
            Ok(out)
        })
    }

    /// The analysed fields of `product`, to score it later with
    /// [`score_documents`](Self::score_documents) without adding it to the index
    /// (live catalog updates).
    pub fn document_terms(&self, product: &Product) -> DocumentTerms {
        let category = product.category.join(" ");
        let attributes: Vec<&str> = product.attributes.values().map(String::as_str).collect();
        let attributes = attributes.join(" ");
        let texts: [&str; 5] = [
            &product.title,
            product.description.as_deref().unwrap_or(""),
            &category,
            product.brand.as_deref().unwrap_or(""),
            &attributes,
        ];
        let mut fields: [FieldTerms; 5] = Default::default();
        for (slot, text) in fields.iter_mut().zip(texts) {
            for term in self.analyze_all(text) {
                *slot.tf.entry(term).or_insert(0) += 1;
                slot.len += 1;
            }
        }
        DocumentTerms { fields }
    }

    /// The BM25 score of `text` for each listed document that matches a term, as
    /// this index would score it were the document one of its own: the same
    /// analyzer, fields, boosts and BM25 weights (the index's document frequencies
    /// and average field lengths; one more document would shift them by about
    /// 1/N). Returned in the order given, non-matching documents left out.
    pub fn score_documents(
        &self,
        text: &str,
        docs: &[(u32, &DocumentTerms)],
    ) -> Result<Vec<Candidate>> {
        self.guarded("scoring updated products", || {
            let terms = self.analyze(text);
            if terms.is_empty() || docs.is_empty() {
                return Ok(Vec::new());
            }
            let searcher = self.reader.searcher();
            // One weight per (field, term), as the term queries of `search` use.
            let mut weights: Vec<Vec<Bm25Weight>> = Vec::with_capacity(5);
            for (field, boost) in self.weighted_fields() {
                let mut per_term = Vec::with_capacity(terms.len());
                for t in &terms {
                    let term = Term::from_field_text(field, t);
                    let w = Bm25Weight::for_terms(&searcher, &[term]).map_err(tv)?;
                    per_term.push(w.boost_by(boost));
                }
                weights.push(per_term);
            }
            let mut out = Vec::new();
            for &(ord, doc) in docs {
                let mut score = 0.0f32;
                let mut hit = false;
                for (f, field) in doc.fields.iter().enumerate() {
                    let norm = FieldNormReader::fieldnorm_to_id(field.len);
                    for (i, t) in terms.iter().enumerate() {
                        if let Some(&tf) = field.tf.get(t) {
                            hit = true;
                            score += weights[f][i].score(norm, tf);
                        }
                    }
                }
                if hit {
                    out.push(Candidate { ord, score });
                }
            }
            Ok(out)
        })
    }

    /// BM25 top-`k` for `text`, best first. With `allowed` (indexed by ordinal),
    /// only products whose entry is true are collected, inside the search, so `k`
    /// hits come back whenever `k` matching products exist.
    pub fn search(
        &self,
        text: &str,
        k: usize,
        allowed: Option<Arc<Vec<bool>>>,
    ) -> Result<Vec<Candidate>> {
        self.guarded("searching", || {
            if k == 0 {
                return Ok(Vec::new());
            }
            let terms = self.analyze(text);
            if terms.is_empty() {
                return Ok(Vec::new());
            }
            let query = self.build_query(&terms);
            let searcher = self.reader.searcher();
            let top = TopDocs::with_limit(k);
            let docs = match allowed {
                Some(mask) => {
                    let filter = FilterCollector::new(
                        "ord".to_string(),
                        move |ord: u64| mask.get(ord as usize).copied().unwrap_or(false),
                        top,
                    );
                    searcher.search(&query, &filter).map_err(tv)?
                }
                None => searcher.search(&query, &top).map_err(tv)?,
            };
            let mut hits = Vec::with_capacity(docs.len());
            for (score, addr) in docs {
                let seg = searcher.segment_reader(addr.segment_ord);
                let column = seg.fast_fields().u64("ord").map_err(tv)?;
                let ord = column
                    .first(addr.doc_id)
                    .ok_or_else(|| Error::TextIndex(format!("document {addr:?} has no ordinal")))?;
                hits.push(Candidate {
                    ord: ord as u32,
                    score,
                });
            }
            // Equal scores: smaller ordinal first, so results are deterministic.
            sort_candidates(&mut hits);
            Ok(hits)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> Vec<Product> {
        let titles = [
            "Cordless Drill Driver Kit",
            "Hammer Drill 18V",
            "Rain Shower Head",
            "Drill Bit Set for Metal",
            "Kitchen Faucet with Sprayer",
            "Shower Faucet Chrome",
        ];
        titles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut p = Product::new(format!("p{i}"), *t);
                p.description = Some(format!("{t} description, drill {i}"));
                p
            })
            .collect()
    }

    /// Every path below `dir`, sorted.
    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(listing(&path));
            }
            out.push(path);
        }
        out.sort();
        out
    }

    #[cfg(unix)]
    fn set_modes(dir: &Path, dir_mode: u32, file_mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        for path in listing(dir) {
            let mode = if path.is_dir() { dir_mode } else { file_mode };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn opens_and_searches_a_read_only_directory_without_creating_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("text");
        let built = TextIndex::build(&products(), Some(&dir), &|_| {}).unwrap();
        let expected = built.search("drill", 10, None).unwrap();
        drop(built);
        // The build's writer and reader leave their (empty) lock files; without
        // them, a reader that took its lock would create one.
        for lock in [".tantivy-meta.lock", ".tantivy-writer.lock"] {
            std::fs::remove_file(dir.join(lock)).unwrap();
        }
        let before = listing(&dir);
        set_modes(&dir, 0o555, 0o444);
        let opened = TextIndex::open(&dir);
        let searched = opened.as_ref().map(|t| t.search("drill", 10, None));
        let after = listing(&dir);
        set_modes(&dir, 0o755, 0o644);
        let hits = searched.unwrap().unwrap();
        let opened = opened.unwrap();
        assert_eq!(opened.len(), 6);
        assert_eq!(hits.len(), expected.len());
        for (a, b) in hits.iter().zip(&expected) {
            assert_eq!(a.ord, b.ord);
            assert!((a.score - b.score).abs() < 1e-6);
        }
        // Root ignores the permission bits: the listing shows that opening and
        // searching created nothing either way (tantivy's own reader creates
        // `.tantivy-meta.lock`).
        assert_eq!(before, after);
    }

    #[test]
    fn a_damaged_meta_json_is_an_error_naming_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("text");
        TextIndex::build(&products(), Some(&dir), &|_| {}).unwrap();
        std::fs::write(dir.join("meta.json"), b"{\"segments\": [{}]}").unwrap();
        let err = TextIndex::open(&dir).unwrap_err();
        assert!(matches!(err, Error::CorruptIndex { .. }), "{err}");
        assert!(err.to_string().contains(&*dir.to_string_lossy()), "{err}");
    }

    #[test]
    fn scores_of_equal_the_search_scores() {
        let index = TextIndex::build(&products(), None, &|_| {}).unwrap();
        for q in ["drill", "shower faucet", "cordless drill kit", "nothing"] {
            let searched = index.search(q, 100, None).unwrap();
            let all: Vec<u32> = (0..6).collect();
            let mut exact = index.scores_of(q, &all).unwrap();
            assert_eq!(exact.len(), searched.len(), "{q}");
            sort_candidates(&mut exact);
            for (a, b) in exact.iter().zip(&searched) {
                assert_eq!(a.ord, b.ord, "{q}");
                assert!((a.score - b.score).abs() < 1e-5, "{q}: {a:?} vs {b:?}");
            }
            // A subset, unsorted and repeated, gives the same scores for those.
            let some = index.scores_of(q, &[5, 1, 1, 3]).unwrap();
            for c in &some {
                assert!(searched
                    .iter()
                    .any(|s| s.ord == c.ord && (s.score - c.score).abs() < 1e-5));
            }
            assert!(some.windows(2).all(|w| w[0].ord < w[1].ord));
        }
        assert!(index.scores_of("drill", &[99]).unwrap().is_empty());
    }

    #[test]
    fn documents_outside_the_index_score_as_they_would_inside_it() {
        let products = products();
        let index = TextIndex::build(&products, None, &|_| {}).unwrap();
        for query in ["drill", "white shower head", "cordless drill brand", "zzzz"] {
            let all: Vec<u32> = (0..products.len() as u32).collect();
            let inside = index.scores_of(query, &all).unwrap();
            let terms: Vec<DocumentTerms> =
                products.iter().map(|p| index.document_terms(p)).collect();
            let docs: Vec<(u32, &DocumentTerms)> = terms
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u32, t))
                .collect();
            let outside = index.score_documents(query, &docs).unwrap();
            assert_eq!(inside.len(), outside.len(), "{query}");
            for (a, b) in inside.iter().zip(&outside) {
                assert_eq!(a.ord, b.ord, "{query}");
                assert!((a.score - b.score).abs() < 1e-4, "{query}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn reference_score_grows_with_the_query_and_ignores_the_candidates() {
        let index = TextIndex::build(&products(), None, &|_| {}).unwrap();
        let one = index.reference_score("drill").unwrap();
        let two = index.reference_score("drill shower").unwrap();
        assert!(one > 0.0 && two > one, "{one} {two}");
        assert_eq!(index.reference_score("").unwrap(), 0.0);
        // A term no product has counts at full idf: more than a common one.
        assert!(index.reference_score("zzzz").unwrap() > one);
        // The best real match stays below the reference of a product holding every
        // term in every filled field.
        let best = index.search("drill", 1, None).unwrap()[0].score;
        assert!(best < one * 2.0, "{best} vs {one}");
    }
}
