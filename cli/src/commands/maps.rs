//! `pulse map …`: the maps of the keyspace, a map's content or one value, writes (seen by
//! every replica at once), and its changes live. Each invocation but `ls` joins the map as
//! a replica for its duration.

use pulse::rmap::{EventKind, Map, MapOptions};
use serde_json::{json, Map as JsonMap, Value};

use super::{count_cell, interrupted, Ctx};
use crate::{
    args::MapCmd,
    listing,
    output::{payload_cell, put_payload, Table},
    Failure,
};

async fn join(cx: &Ctx, name: &str) -> Result<Map, Failure> {
    Ok(Map::join(
        cx.backend.clone(),
        name,
        MapOptions::default().with_keyspace(cx.keyspace.clone()),
    )
    .await?)
}

fn entry(key: &str, value: Option<&[u8]>) -> Value {
    let mut obj = JsonMap::new();
    obj.insert("key".into(), json!(key));
    if let Some(v) = value {
        put_payload(&mut obj, v);
        if let Some(p) = obj.remove("payload") {
            obj.insert("value".into(), p);
        }
        if let Some(p) = obj.remove("payload_base64") {
            obj.insert("value_base64".into(), p);
        }
    }
    Value::Object(obj)
}

pub(crate) async fn run(cx: &Ctx, cmd: MapCmd) -> Result<(), Failure> {
    match cmd {
        MapCmd::Ls(a) => {
            let rows = listing::maps(cx.backend.as_ref(), &cx.keyspace, a.limit).await?;
            cx.out.print(json!(rows), || {
                let mut t = Table::new(&["map", "keys"]);
                for r in &rows {
                    t.row(vec![r.name.clone(), count_cell(r.keys)]);
                }
                t
            });
        }
        MapCmd::Get { map, key: None } => {
            let m = join(cx, &map).await?;
            let snap = m.snapshot();
            let mut keys: Vec<&String> = snap.keys().collect();
            keys.sort();
            let value: Vec<Value> = keys
                .iter()
                .map(|k| entry(k, snap.get(*k).map(|v| &v[..])))
                .collect();
            cx.out.print(json!(value), || {
                let mut t = Table::new(&["key", "value"]);
                for k in &keys {
                    t.row(vec![
                        (*k).clone(),
                        snap.get(*k).map_or(String::new(), |v| payload_cell(v)),
                    ]);
                }
                t
            });
            m.close().await?;
        }
        MapCmd::Get {
            map,
            key: Some(key),
        } => {
            let m = join(cx, &map).await?;
            let value = m.get(&key);
            m.close().await?;
            let Some(v) = value else {
                return Err(Failure::NotFound(format!("map {map:?} has no key {key:?}")));
            };
            cx.out.print(entry(&key, Some(&v)), || {
                let mut t = Table::new(&["key", "value"]);
                t.row(vec![key.clone(), payload_cell(&v)]);
                t
            });
        }
        MapCmd::Set { map, key, value } => {
            let m = join(cx, &map).await?;
            let previous = m.set_and_wait(&key, value.clone()).await;
            m.close().await?;
            let previous = previous?;
            cx.out.print(json!({"key": key, "set": true, "previous": previous.as_deref().map(String::from_utf8_lossy)}), || {
                let mut t = Table::new(&["key", "value", "previous"]);
                t.row(vec![key.clone(), value.clone(), previous.as_deref().map_or("-".into(), payload_cell)]);
                t
            });
        }
        MapCmd::Del { map, key } => {
            let m = join(cx, &map).await?;
            let deleted = m.delete(&key).await;
            m.close().await?;
            if deleted?.is_none() {
                return Err(Failure::NotFound(format!("map {map:?} has no key {key:?}")));
            }
            cx.out.print(json!({"key": key, "deleted": true}), || {
                let mut t = Table::new(&["deleted"]);
                t.row(vec![key.clone()]);
                t
            });
        }
        MapCmd::Watch { map } => {
            let m = join(cx, &map).await?;
            let mut changes = m.subscribe()?;
            loop {
                tokio::select! {
                    e = changes.recv() => {
                        let Some(e) = e else { break };
                        let kind = match e.kind {
                            EventKind::Change => "set",
                            EventKind::Delete => "delete",
                            EventKind::Reset => "reset",
                        };
                        let value = e.key.as_deref().and_then(|k| m.get(k));
                        let mut doc = entry(e.key.as_deref().unwrap_or(""), value.as_deref());
                        if let Value::Object(o) = &mut doc {
                            o.insert("change".into(), json!(kind));
                        }
                        cx.out.line(doc, || match (&e.key, &value) {
                            (Some(k), Some(v)) => format!("{kind:<6} {k} = {}", payload_cell(v)),
                            (Some(k), None) => format!("{kind:<6} {k}"),
                            (None, _) => format!("{kind:<6} (the whole map: read it again)"),
                        });
                    }
                    _ = interrupted() => break,
                }
            }
            m.close().await?;
        }
    }
    Ok(())
}
