//! Matrix expansion (`strategy.matrix` with include/exclude and expressions).

use indexmap::IndexMap;
use serde_json::Value;

use crate::expr::Context;

/// One matrix leg: key -> value, in declaration order.
pub type Leg = IndexMap<String, Value>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MatrixError(pub String);

/// Expands a raw `matrix:` value (as stored in `Strategy::matrix`) into legs, the way
/// GitHub does: cartesian product of the array keys in order, then `exclude` (partial
/// match), then `include` (merge into every leg whose original values it does not
/// overwrite, else add a new leg). `${{ }}` strings are evaluated with `ctx` first (a whole
/// matrix, one key's array, or one value may be an expression, e.g. `fromJSON(needs.a.outputs.m)`).
/// An empty matrix yields one empty leg... no: yields no legs only when the product is empty
/// and there are no includes; a job with no `strategy` is not expanded at all.
pub fn expand(matrix: &Value, ctx: &dyn Context) -> Result<Vec<Leg>, MatrixError> {
    let _ = (matrix, ctx);
    todo!()
}

/// act's `--matrix key:value` filter: keep a leg iff, for every key it has that appears in
/// `filter`, its value (as a string) is one of the filter's values.
pub fn filter(legs: Vec<Leg>, filter: &IndexMap<String, Vec<String>>) -> Vec<Leg> {
    let _ = filter;
    legs
}
