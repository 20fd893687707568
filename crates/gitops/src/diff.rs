//! The pure heart of a reconcile: desired objects and live objects in, the changes that make
//! the live state match out, in the order they must be applied. No I/O.
//!
//! ```text
//! let diff = gitops::diff(&desired, &live, DiffOptions { prune: true });
//! target.apply(&diff).await?;
//! ```
//!
//! Order: creations and updates by `rank` (namespaces and CRDs first), then dependencies
//! before dependents (a topological order of `depends_on`, ties by key); deletions after
//! them, in reverse rank order (a namespace last).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::{Compare, Key, LiveObject, Object};

/// How the diff treats live objects that Git no longer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffOptions {
    /// Delete them (`false`: report them as `extra` and keep them).
    pub prune: bool,
}

/// One change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The object is missing on the target.
    Create(Object),
    /// The object differs; `fields` names the differing paths (`env.GREETING`, `state`).
    Update { object: Object, fields: Vec<String> },
    /// The object is on the target but no longer in Git.
    Delete(Key),
}

impl Change {
    pub fn key(&self) -> &Key {
        match self {
            Change::Create(o) | Change::Update { object: o, .. } => &o.key,
            Change::Delete(k) => k,
        }
    }

    /// `create service/web`, `update service/web (env.A, state)`, `delete service/db`.
    pub fn describe(&self) -> String {
        match self {
            Change::Create(o) => format!("create {}", o.key),
            Change::Update { object, fields } => {
                format!("update {} ({})", object.key, fields.join(", "))
            }
            Change::Delete(k) => format!("delete {k}"),
        }
    }
}

/// What it takes to make the live state match Git.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    /// In application order.
    pub changes: Vec<Change>,
    /// Desired objects the target already has as wanted.
    pub in_sync: Vec<Key>,
    /// Live objects not in Git that are kept because pruning is off.
    pub extra: Vec<Key>,
}

impl Diff {
    /// Nothing to do and nothing left over: the app is Synced.
    pub fn is_synced(&self) -> bool {
        self.changes.is_empty() && self.extra.is_empty()
    }
}

/// Compares `desired` with `live` (keyed by [`Key`]; every live object of the app, as far as
/// the target can find them).
pub fn diff(desired: &[Object], live: &BTreeMap<Key, LiveObject>, options: DiffOptions) -> Diff {
    let mut out = Diff::default();
    for i in order(desired) {
        let object = &desired[i];
        match live.get(&object.key) {
            None => out.changes.push(Change::Create(object.clone())),
            Some(l) => {
                let fields = differences(&object.spec, &l.spec, object.compare);
                if fields.is_empty() {
                    out.in_sync.push(object.key.clone());
                } else {
                    out.changes.push(Change::Update {
                        object: object.clone(),
                        fields,
                    });
                }
            }
        }
    }
    let wanted: BTreeSet<&Key> = desired.iter().map(|o| &o.key).collect();
    let mut gone: Vec<&Key> = live.keys().filter(|k| !wanted.contains(k)).collect();
    // Reverse rank: what everything else lives in (a namespace) goes last.
    gone.sort_by_key(|k| (std::cmp::Reverse(rank_of_kind(&k.kind)), *k));
    for k in gone {
        if options.prune {
            out.changes.push(Change::Delete(k.clone()));
        } else {
            out.extra.push(k.clone());
        }
    }
    out
}

/// The rank a kind gets on Kubernetes: what other objects live in or are typed by first.
pub fn rank_of_kind(kind: &str) -> u8 {
    match kind {
        "Namespace" | "CustomResourceDefinition" => 0,
        _ => 1,
    }
}

/// Indexes of `objects` in application order: by rank, then dependencies first (Kahn's
/// algorithm, ties by key). Dependencies on keys not among `objects` are ignored; objects on
/// a cycle (validation refuses those earlier) come last, by key.
pub fn order(objects: &[Object]) -> Vec<usize> {
    let index: BTreeMap<&Key, usize> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (&o.key, i))
        .collect();
    let mut waiting_on: Vec<usize> = vec![0; objects.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); objects.len()];
    for (i, o) in objects.iter().enumerate() {
        let deps: BTreeSet<usize> = o
            .depends_on
            .iter()
            .filter_map(|d| index.get(d).copied())
            .filter(|&d| d != i)
            .collect();
        waiting_on[i] = deps.len();
        for d in deps {
            dependents[d].push(i);
        }
    }
    let sort_key = |i: usize| (objects[i].rank, &objects[i].key);
    let mut ready: BTreeSet<(u8, &Key, usize)> = (0..objects.len())
        .filter(|&i| waiting_on[i] == 0)
        .map(|i| {
            let (r, k) = sort_key(i);
            (r, k, i)
        })
        .collect();
    let mut out = Vec::with_capacity(objects.len());
    while let Some(first) = ready.pop_first() {
        let i = first.2;
        out.push(i);
        for &d in &dependents[i] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                let (r, k) = sort_key(d);
                ready.insert((r, k, d));
            }
        }
    }
    if out.len() < objects.len() {
        let mut rest: Vec<usize> = (0..objects.len()).filter(|i| !out.contains(i)).collect();
        rest.sort_by_key(|&i| sort_key(i));
        out.extend(rest);
    }
    out
}

/// The paths where `live` differs from `desired` (`a.b`, `list[2].x`; the empty path is
/// shown as `.`).
pub fn differences(desired: &Value, live: &Value, compare: Compare) -> Vec<String> {
    let mut out = Vec::new();
    walk(desired, live, compare, &mut String::new(), &mut out);
    out
}

fn walk(desired: &Value, live: &Value, compare: Compare, path: &mut String, out: &mut Vec<String>) {
    let shown = |p: &str| {
        if p.is_empty() {
            ".".to_owned()
        } else {
            p.to_owned()
        }
    };
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match l.get(k) {
                    Some(lv) => walk(dv, lv, compare, path, out),
                    // A desired null is "unset": a missing live field matches it.
                    None if dv.is_null() => {}
                    None => out.push(shown(path)),
                }
                path.truncate(len);
            }
            if compare == Compare::Exact {
                for (k, lv) in l {
                    if !d.contains_key(k) && !lv.is_null() {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        out.push(p);
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            if d.len() != l.len() {
                out.push(shown(path));
                return;
            }
            for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(dv, lv, compare, path, out);
                path.truncate(len);
            }
        }
        (Value::Number(d), Value::Number(l)) => {
            if d.as_f64() != l.as_f64() {
                out.push(shown(path));
            }
        }
        (d, l) => {
            if d != l {
                out.push(shown(path));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::HealthStatus;
    use serde_json::json;

    fn svc(name: &str, spec: Value, deps: &[&str]) -> Object {
        Object {
            key: Key::service(name),
            spec,
            depends_on: deps.iter().map(|d| Key::service(d)).collect(),
            rank: 1,
            compare: Compare::Exact,
        }
    }

    fn kube(kind: &str, ns: &str, name: &str, spec: Value) -> Object {
        Object {
            key: Key {
                api_version: "v1".into(),
                kind: kind.into(),
                namespace: ns.into(),
                name: name.into(),
            },
            spec,
            depends_on: vec![],
            rank: rank_of_kind(kind),
            compare: Compare::Subset,
        }
    }

    fn live(objects: &[(Key, Value)]) -> BTreeMap<Key, LiveObject> {
        objects
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    LiveObject {
                        key: k.clone(),
                        spec: v.clone(),
                        health: HealthStatus::Healthy,
                        message: String::new(),
                    },
                )
            })
            .collect()
    }

    const PRUNE: DiffOptions = DiffOptions { prune: true };
    const KEEP: DiffOptions = DiffOptions { prune: false };

    /// Runs the diff and renders it as one line per change.
    fn check(
        desired: &[Object],
        live: &BTreeMap<Key, LiveObject>,
        options: DiffOptions,
        expect: &[&str],
    ) {
        let d = diff(desired, live, options);
        let mut got: Vec<String> = d.changes.iter().map(Change::describe).collect();
        got.extend(d.extra.iter().map(|k| format!("keep {k}")));
        assert_eq!(got, expect);
        assert_eq!(d.is_synced(), expect.is_empty());
    }

    #[test]
    fn nothing_live_creates_everything_dependencies_first() {
        let desired = [
            svc("web", json!({"image": "w"}), &["api"]),
            svc("api", json!({"image": "a"}), &["db"]),
            svc("db", json!({"image": "d"}), &[]),
            svc("cache", json!({"image": "c"}), &[]),
        ];
        check(
            &desired,
            &live(&[]),
            PRUNE,
            &[
                "create service/cache",
                "create service/db",
                "create service/api",
                "create service/web",
            ],
        );
    }

    #[test]
    fn equal_states_are_synced() {
        let desired = [svc(
            "web",
            json!({"image": "w", "env": {"A": "1"}, "state": "running"}),
            &[],
        )];
        let l = live(&[(
            Key::service("web"),
            json!({"image": "w", "env": {"A": "1"}, "state": "running"}),
        )]);
        check(&desired, &l, PRUNE, &[]);
        assert_eq!(diff(&desired, &l, PRUNE).in_sync, vec![Key::service("web")]);
    }

    #[test]
    fn changed_fields_are_named() {
        let desired = [svc(
            "web",
            json!({"image": "w2", "env": {"A": "1", "B": "2"}, "state": "running"}),
            &[],
        )];
        let l = live(&[(
            Key::service("web"),
            json!({"image": "w1", "env": {"A": "1", "B": "3"}, "state": "exited"}),
        )]);
        check(
            &desired,
            &l,
            PRUNE,
            &["update service/web (image, env.B, state)"],
        );
    }

    #[test]
    fn exact_comparison_catches_removed_fields() {
        let desired = [svc("web", json!({"env": {"A": "1"}}), &[])];
        let l = live(&[(Key::service("web"), json!({"env": {"A": "1", "OLD": "x"}}))]);
        check(&desired, &l, PRUNE, &["update service/web (env.OLD)"]);
    }

    #[test]
    fn subset_comparison_ignores_server_defaults_and_status() {
        let desired = [kube(
            "ConfigMap",
            "shop",
            "cfg",
            json!({"data": {"a": "1"}, "metadata": {"name": "cfg"}}),
        )];
        let l = live(&[(
            desired[0].key.clone(),
            json!({"data": {"a": "1"}, "metadata": {"name": "cfg", "uid": "u", "resourceVersion": "7"}, "status": {}}),
        )]);
        check(&desired, &l, PRUNE, &[]);
        let drifted = live(&[(
            desired[0].key.clone(),
            json!({"data": {"a": "2"}, "metadata": {"name": "cfg"}}),
        )]);
        check(
            &desired,
            &drifted,
            PRUNE,
            &["update configmap/shop/cfg (data.a)"],
        );
    }

    #[test]
    fn arrays_compare_by_length_then_element() {
        let d = json!({"ports": ["1:1", "2:2"], "c": [{"name": "a", "image": "x"}]});
        assert_eq!(
            differences(
                &d,
                &json!({"ports": ["1:1"], "c": [{"name": "a", "image": "x"}]}),
                Compare::Exact
            ),
            ["ports"]
        );
        assert_eq!(
            differences(
                &d,
                &json!({"ports": ["1:1", "2:2"], "c": [{"name": "a", "image": "y", "extra": 1}]}),
                Compare::Subset
            ),
            ["c[0].image"]
        );
        assert!(differences(&d, &d, Compare::Exact).is_empty());
    }

    #[test]
    fn numbers_compare_by_value_and_null_is_unset() {
        assert!(differences(&json!({"r": 2}), &json!({"r": 2.0}), Compare::Exact).is_empty());
        assert!(differences(&json!({"cmd": null}), &json!({}), Compare::Exact).is_empty());
        assert!(differences(&json!({}), &json!({"cmd": null}), Compare::Exact).is_empty());
        assert_eq!(differences(&json!("a"), &json!("b"), Compare::Exact), ["."]);
        assert_eq!(
            differences(&json!({"a": 1}), &json!({"a": "1"}), Compare::Exact),
            ["a"]
        );
    }

    #[test]
    fn objects_gone_from_git_are_pruned_or_kept() {
        let desired = [svc("web", json!({}), &[])];
        let l = live(&[
            (Key::service("web"), json!({})),
            (Key::service("old"), json!({})),
        ]);
        check(&desired, &l, PRUNE, &["delete service/old"]);
        check(&desired, &l, KEEP, &["keep service/old"]);
        assert!(
            !diff(&desired, &l, KEEP).is_synced(),
            "a kept leftover is still OutOfSync"
        );
    }

    #[test]
    fn namespaces_and_crds_first_and_deleted_last() {
        let desired = [
            kube("Deployment", "shop", "web", json!({})),
            kube("Namespace", "", "shop", json!({})),
            kube(
                "CustomResourceDefinition",
                "",
                "widgets.example.com",
                json!({}),
            ),
            kube("ConfigMap", "shop", "a", json!({})),
        ];
        check(
            &desired,
            &live(&[]),
            PRUNE,
            &[
                "create customresourcedefinition/widgets.example.com",
                "create namespace/shop",
                "create configmap/shop/a",
                "create deployment/shop/web",
            ],
        );
        let gone = live(&[
            (desired[1].key.clone(), json!({})),
            (desired[3].key.clone(), json!({})),
        ]);
        check(
            &[],
            &gone,
            PRUNE,
            &["delete configmap/shop/a", "delete namespace/shop"],
        );
    }

    #[test]
    fn only_differing_objects_change_in_dependency_order() {
        let desired = [
            svc("web", json!({"image": "w2"}), &["db"]),
            svc("db", json!({"image": "d2"}), &[]),
            svc("cache", json!({"image": "c"}), &[]),
        ];
        let l = live(&[
            (Key::service("web"), json!({"image": "w1"})),
            (Key::service("db"), json!({"image": "d1"})),
            (Key::service("cache"), json!({"image": "c"})),
        ]);
        check(
            &desired,
            &l,
            PRUNE,
            &["update service/db (image)", "update service/web (image)"],
        );
    }

    #[test]
    fn cycles_and_unknown_dependencies_never_lose_objects() {
        let desired = [
            svc("a", json!({}), &["b"]),
            svc("b", json!({}), &["a"]),
            svc("c", json!({}), &["zzz", "c"]),
        ];
        assert_eq!(order(&desired), vec![2, 0, 1]);
    }
}
