//! Versioned binary frames for Pulse's internal messages.
//!
//! A frame is one version byte ([`FRAME_VERSION`]) followed by the `postcard` encoding of the
//! message. Decoding rejects unknown versions, truncated input and trailing bytes with
//! [`Error::Malformed`], so data from foreign writers never panics and never half-decodes.
//!
//! Two formats are also produced by backend atomic operations (the Redis backend builds them
//! in Lua), so their byte layout is part of the backend contract and pinned by tests here and
//! by the conformance suite:
//! - [`MapNotice`] frames published on a map's channel, which have a fixed-width layout of
//!   their own ([`NOTICE_VERSION`], see [`MapNotice`]) so Lua builds one with a single
//!   `struct.pack`;
//! - list values ([`encode_list`]): a postcard sequence of byte strings *without* a version
//!   byte, stored as the value of a map key (`varint(count)` then `varint(len) bytes` each).

use std::ops::Range;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version byte every frame starts with.
pub const FRAME_VERSION: u8 = 1;

/// Encodes `value` as a versioned frame.
///
/// ```
/// let frame = pulse::codec::encode(&("job", 7u32))?;
/// let back: (String, u32) = pulse::codec::decode("example", &frame)?;
/// assert_eq!(back, ("job".to_string(), 7));
/// # Ok::<(), pulse::Error>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![FRAME_VERSION];
    let body = postcard::to_allocvec(value)
        .map_err(|e| Error::malformed("frame", format!("cannot encode: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a versioned frame; `what` names the message in errors.
pub fn decode<T: DeserializeOwned>(what: &'static str, frame: &[u8]) -> Result<T> {
    match frame.split_first() {
        None => Err(Error::malformed(what, "empty frame")),
        Some((&FRAME_VERSION, body)) => decode_exact(what, body),
        Some((v, _)) => Err(Error::malformed(
            what,
            format!("unsupported frame version {v}"),
        )),
    }
}

fn decode_exact<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| Error::malformed(what, e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            what,
            format!("{} trailing bytes", rest.len()),
        ));
    }
    Ok(value)
}

/// The version byte of [`MapNotice`] frames as written today.
pub const NOTICE_VERSION: u8 = 2;

/// A change notice published by every map mutation, in commit order.
///
/// Layout (version [`NOTICE_VERSION`]), integers little-endian: `2`, `epoch: u64`,
/// `rev: u64`, the change's tag `u8` (0 set, 1 delete, 2 reset, 3 destroy), then for a set
/// `key_len: u32, key, value_len: u32, value`, for a delete `key_len: u32, key`.
///
/// A set whose value is too big to travel (see [`NOTICE_VALUE_BUDGET`]) is tag 5,
/// [`MapChange::Changed`]: `key_len: u32, key`, and replicas read the value from the hash.
///
/// A batch of sets committed in one step may travel as one frame with tag 4: the header's
/// `rev` is the first set's revision, then `count: u32` and `count` (key, value) pairs laid
/// out as above, where a `value_len` of `0xFFFF_FFFF` (and no value bytes) is a
/// [`MapChange::Changed`]; set `i` has revision `rev + i` ([`MapNotice::encode_sets`],
/// [`MapNotice::decode_all`]).
///
/// Decoding also accepts version 1 (a postcard frame, written by releases before
/// fixed-width notices were introduced), so replicas keep up with writers that run an older
/// release.
///
/// `epoch` identifies one *generation* of the map's hash: it is chosen when the hash is
/// created and survives resets, so a hash that vanished (expiry, flush, restart without
/// persistence) and was re-created is recognisable by its new epoch even though its `rev`
/// restarted at 1. `rev` increases by one with every committed mutation of a generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapNotice {
    /// Generation of the map's hash.
    pub epoch: u64,
    /// Revision after this change.
    pub rev: u64,
    /// What changed.
    pub change: MapChange,
}

/// What one map mutation changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapChange {
    /// `key` now holds `value`.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
    },
    /// `key` was removed.
    Delete {
        /// The key.
        key: String,
    },
    /// Every key was removed.
    Reset,
    /// Every key was removed and the map was marked destroyed.
    Destroy,
    /// `key` now holds a value too big to travel in the notice (see
    /// [`NOTICE_VALUE_BUDGET`]); read it from the map's hash. (Last, so the variant
    /// numbers of version 1 frames keep their meaning.)
    Changed {
        /// The key.
        key: String,
    },
}

const NOTICE: &str = "map notice";

/// Most value bytes one notice frame carries. A set whose value would take its frame past
/// it travels as [`MapChange::Changed`] (key only), so a frame stays near 1 MiB whatever the
/// values' size — far below what a pub/sub connection can buffer (Redis drops a subscriber
/// whose output passes 32 MiB, or 8 MiB for a minute), and big values cost replicas one
/// read each instead of a dropped subscription. In a batch frame values are taken in order
/// while they fit. Backends that build frames themselves (Lua) apply the same rule.
pub const NOTICE_VALUE_BUDGET: usize = 1 << 20;

/// Marks an omitted value ([`MapChange::Changed`]) in a batch frame.
const OMITTED: u32 = u32::MAX;

impl MapNotice {
    /// Encodes the notice as a frame.
    ///
    /// ```
    /// use pulse::codec::{MapChange, MapNotice};
    /// let n = MapNotice { epoch: 7, rev: 1, change: MapChange::Delete { key: "k".into() } };
    /// let frame = n.encode()?;
    /// assert_eq!(frame.len(), 1 + 8 + 8 + 1 + 4 + 1);
    /// assert_eq!(MapNotice::decode(&frame)?, n);
    /// # Ok::<(), pulse::Error>(())
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = match &self.change {
            MapChange::Set { key, value } => 8 + key.len() + value.len(),
            MapChange::Delete { key } | MapChange::Changed { key } => 4 + key.len(),
            MapChange::Reset | MapChange::Destroy => 0,
        };
        let tag = match &self.change {
            MapChange::Set { .. } => 0,
            MapChange::Delete { .. } => 1,
            MapChange::Reset => 2,
            MapChange::Destroy => 3,
            MapChange::Changed { .. } => 5,
        };
        let mut out = notice_header(18 + body, self.epoch, self.rev, tag);
        match &self.change {
            MapChange::Set { key, value } => {
                put_sized(&mut out, key.as_bytes())?;
                put_sized(&mut out, value)?;
            }
            MapChange::Delete { key } | MapChange::Changed { key } => {
                put_sized(&mut out, key.as_bytes())?
            }
            MapChange::Reset | MapChange::Destroy => {}
        }
        Ok(out)
    }

    /// The notice of one set: [`MapChange::Set`], or [`MapChange::Changed`] when the value
    /// is over [`NOTICE_VALUE_BUDGET`].
    pub fn set(epoch: u64, rev: u64, key: &str, value: &Bytes) -> Self {
        let key = key.to_owned();
        let change = if value.len() > NOTICE_VALUE_BUDGET {
            MapChange::Changed { key }
        } else {
            MapChange::Set {
                key,
                value: value.clone(),
            }
        };
        MapNotice { epoch, rev, change }
    }

    /// Encodes sets committed in one step, the first at revision `first_rev`, as one frame
    /// (tag 4; a single set is encoded as a plain set notice). Values are carried in order
    /// while they fit in [`NOTICE_VALUE_BUDGET`]; the others travel as
    /// [`MapChange::Changed`]. No sets is
    /// [`Error::InvalidArgument`]: there is nothing to notify.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use pulse::codec::{MapChange, MapNotice};
    /// let frame = MapNotice::encode_sets(7, 3, &[("a", b"1"), ("b", b"2")])?;
    /// let notices = MapNotice::decode_all(&frame)?;
    /// assert_eq!(notices[1].rev, 4);
    /// assert_eq!(notices[1].change, MapChange::Set { key: "b".into(), value: Bytes::from("2") });
    /// # Ok::<(), pulse::Error>(())
    /// ```
    pub fn encode_sets(epoch: u64, first_rev: u64, sets: &[(&str, &[u8])]) -> Result<Vec<u8>> {
        if sets.is_empty() {
            return Err(Error::InvalidArgument("a notice of no sets".into()));
        }
        if let [(key, value)] = sets {
            return MapNotice::set(epoch, first_rev, key, &Bytes::copy_from_slice(value)).encode();
        }
        let mut budget = NOTICE_VALUE_BUDGET;
        let carried: Vec<bool> = sets
            .iter()
            .map(|(_, v)| {
                let fits = v.len() <= budget;
                if fits {
                    budget -= v.len();
                }
                fits
            })
            .collect();
        let body: usize =
            sets.iter().map(|(k, _)| 8 + k.len()).sum::<usize>() + (NOTICE_VALUE_BUDGET - budget);
        let mut out = notice_header(22 + body, epoch, first_rev, 4);
        let count = u32::try_from(sets.len())
            .map_err(|_| Error::malformed(NOTICE, "too many sets in one frame"))?;
        out.extend_from_slice(&count.to_le_bytes());
        for ((key, value), carried) in sets.iter().zip(carried) {
            put_sized(&mut out, key.as_bytes())?;
            if carried {
                put_sized(&mut out, value)?;
            } else {
                out.extend_from_slice(&OMITTED.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Decodes a frame holding one notice of either version; a batch frame (tag 4) is
    /// [`Error::Malformed`] here, see [`decode_all`](Self::decode_all). The value of a set
    /// is copied out of the frame, so a replica holding it keeps no more memory than its
    /// own bytes.
    pub fn decode(frame: &[u8]) -> Result<Self> {
        let mut all = Self::decode_all(frame)?;
        match (all.pop(), all.is_empty()) {
            (Some(n), true) => Ok(n),
            _ => Err(Error::malformed(
                NOTICE,
                "a batch frame where one notice was expected",
            )),
        }
    }

    /// Decodes a frame of any kind into its notices, in revision order.
    pub fn decode_all(frame: &[u8]) -> Result<Vec<Self>> {
        if frame.first() != Some(&NOTICE_VERSION) {
            return decode(NOTICE, frame).map(|n| vec![n]);
        }
        let mut pos = 1;
        let epoch = take_u64(frame, &mut pos)?;
        let rev = take_u64(frame, &mut pos)?;
        let tag = *frame
            .get(pos)
            .ok_or_else(|| Error::malformed(NOTICE, "no change tag"))?;
        pos += 1;
        let one = |change| vec![MapNotice { epoch, rev, change }];
        let out = match tag {
            0 => one(take_set(frame, &mut pos)?),
            1 => one(MapChange::Delete {
                key: take_text(frame, &mut pos)?,
            }),
            2 => one(MapChange::Reset),
            3 => one(MapChange::Destroy),
            5 => one(MapChange::Changed {
                key: take_text(frame, &mut pos)?,
            }),
            4 => {
                let count = take_u32(frame, &mut pos)?;
                if count == 0 {
                    return Err(Error::malformed(NOTICE, "an empty batch"));
                }
                let mut out = Vec::with_capacity(count.min(1024) as usize);
                for i in 0..u64::from(count) {
                    let rev = rev
                        .checked_add(i)
                        .ok_or_else(|| Error::malformed(NOTICE, "revision overflow"))?;
                    let change = take_set(frame, &mut pos)?;
                    out.push(MapNotice { epoch, rev, change });
                }
                out
            }
            t => return Err(Error::malformed(NOTICE, format!("unknown change tag {t}"))),
        };
        if pos != frame.len() {
            return Err(Error::malformed(
                NOTICE,
                format!("{} trailing bytes", frame.len() - pos),
            ));
        }
        Ok(out)
    }
}

/// A frame of `capacity` bytes started with the version, `epoch`, `rev` and change `tag`.
fn notice_header(capacity: usize, epoch: u64, rev: u64, tag: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(NOTICE_VERSION);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&rev.to_le_bytes());
    out.push(tag);
    out
}

fn take_set(frame: &[u8], pos: &mut usize) -> Result<MapChange> {
    let key = take_text(frame, pos)?;
    let mut peek = *pos;
    if take_u32(frame, &mut peek)? == OMITTED {
        *pos = peek;
        return Ok(MapChange::Changed { key });
    }
    Ok(MapChange::Set {
        key,
        value: Bytes::copy_from_slice(&frame[take_sized(frame, pos)?]),
    })
}

/// The `N` bytes at `pos`; `Malformed` ("truncated …") when the frame ends first.
fn take_bytes<const N: usize>(frame: &[u8], pos: &mut usize, what: &str) -> Result<[u8; N]> {
    let raw: [u8; N] = frame
        .get(*pos..)
        .and_then(|rest| rest.get(..N))
        .and_then(|raw| raw.try_into().ok())
        .ok_or_else(|| Error::malformed(NOTICE, format!("truncated {what}")))?;
    *pos += N;
    Ok(raw)
}

fn take_u32(frame: &[u8], pos: &mut usize) -> Result<u32> {
    take_bytes(frame, pos, "length").map(u32::from_le_bytes)
}

fn take_u64(frame: &[u8], pos: &mut usize) -> Result<u64> {
    take_bytes(frame, pos, "header").map(u64::from_le_bytes)
}

fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::malformed(NOTICE, "a key or value over 4 GiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// The range of a length-prefixed field at `pos`.
fn take_sized(frame: &[u8], pos: &mut usize) -> Result<Range<usize>> {
    let len = take_u32(frame, pos)?;
    let start = *pos;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .filter(|end| *end <= frame.len())
        .ok_or_else(|| Error::malformed(NOTICE, "field runs past the end"))?;
    *pos = end;
    Ok(start..end)
}

fn take_text(frame: &[u8], pos: &mut usize) -> Result<String> {
    let range = take_sized(frame, pos)?;
    std::str::from_utf8(&frame[range])
        .map(str::to_owned)
        .map_err(|_| Error::malformed(NOTICE, "key is not UTF-8"))
}

/// Encodes a list value (see the module docs for the layout).
///
/// ```
/// use bytes::Bytes;
/// let v = pulse::codec::encode_list(&[Bytes::from("a"), Bytes::from("bc")]);
/// assert_eq!(v, b"\x02\x01a\x02bc");
/// assert_eq!(pulse::codec::decode_list(&v)?, vec![Bytes::from("a"), Bytes::from("bc")]);
/// # Ok::<(), pulse::Error>(())
/// ```
pub fn encode_list(items: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 2).sum::<usize>() + 2);
    put_varint(&mut out, items.len() as u64);
    for item in items {
        put_varint(&mut out, item.len() as u64);
        out.extend_from_slice(item);
    }
    out
}

/// Decodes a list value; anything else is [`Error::Malformed`].
pub fn decode_list(value: &[u8]) -> Result<Vec<Bytes>> {
    let mut pos = 0;
    let count = get_varint(value, &mut pos).ok_or_else(|| Error::malformed("list", "bad count"))?;
    let mut items = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let len = get_varint(value, &mut pos).ok_or_else(|| Error::malformed("list", "bad len"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| pos.checked_add(len))
            .filter(|end| *end <= value.len())
            .ok_or_else(|| Error::malformed("list", "item runs past the end"))?;
        items.push(Bytes::copy_from_slice(&value[pos..end]));
        pos = end;
    }
    if pos != value.len() {
        return Err(Error::malformed("list", "trailing bytes"));
    }
    Ok(items)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 varint as [`put_varint`] writes it. Only the canonical (shortest)
/// encoding is accepted, and nothing past 64 bits: every accepted value re-encodes to the
/// same bytes, so two different byte strings never decode to the same list.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None; // more than 64 bits
        }
        n |= bits << shift;
        if b & 0x80 == 0 {
            // A last byte of zero after others is an overlong encoding.
            return (b != 0 || shift == 0).then_some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_layout_is_pinned() {
        // Backends that build notices by hand (Lua) rely on exactly this layout.
        let n = MapNotice {
            epoch: 300,
            rev: 2,
            change: MapChange::Set {
                key: "k".into(),
                value: Bytes::from_static(b"v\x00"),
            },
        };
        let header = |epoch: u64, rev: u64, tag: u8| {
            let mut h = vec![2];
            h.extend_from_slice(&epoch.to_le_bytes());
            h.extend_from_slice(&rev.to_le_bytes());
            h.push(tag);
            h
        };
        let mut want = header(300, 2, 0);
        want.extend_from_slice(b"\x01\x00\x00\x00k\x02\x00\x00\x00v\x00");
        assert_eq!(n.encode().unwrap(), want);
        let d = MapNotice {
            epoch: 1,
            rev: 1,
            change: MapChange::Delete { key: "k".into() },
        };
        let mut want = header(1, 1, 1);
        want.extend_from_slice(b"\x01\x00\x00\x00k");
        assert_eq!(d.encode().unwrap(), want);
        let r = MapNotice {
            epoch: 1,
            rev: 128,
            change: MapChange::Reset,
        };
        assert_eq!(r.encode().unwrap(), header(1, 128, 2));
        let x = MapNotice {
            epoch: 1,
            rev: 3,
            change: MapChange::Destroy,
        };
        assert_eq!(x.encode().unwrap(), header(1, 3, 3));
        for notice in [&n, &d, &r, &x] {
            assert_eq!(
                &MapNotice::decode(&notice.encode().unwrap()).unwrap(),
                notice
            );
        }
        // A batch of sets: one header, a count, then the pairs; revisions follow on.
        let batch = MapNotice::encode_sets(1, 5, &[("a", b"x"), ("k", b"")]).unwrap();
        let mut want = header(1, 5, 4);
        want.extend_from_slice(b"\x02\x00\x00\x00");
        want.extend_from_slice(b"\x01\x00\x00\x00a\x01\x00\x00\x00x");
        want.extend_from_slice(b"\x01\x00\x00\x00k\x00\x00\x00\x00");
        assert_eq!(batch, want);
        let all = MapNotice::decode_all(&batch).unwrap();
        assert_eq!(
            all.iter().map(|n| (n.epoch, n.rev)).collect::<Vec<_>>(),
            [(1, 5), (1, 6)]
        );
        assert!(matches!(
            MapNotice::decode(&batch),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            MapNotice::encode_sets(1, 1, &[]),
            Err(Error::InvalidArgument(_))
        ));
        // A value that does not travel: tag 5 alone, 0xFFFFFFFF as its length in a batch.
        let c = MapNotice {
            epoch: 1,
            rev: 9,
            change: MapChange::Changed { key: "k".into() },
        };
        let mut want = header(1, 9, 5);
        want.extend_from_slice(b"\x01\x00\x00\x00k");
        assert_eq!(c.encode().unwrap(), want);
        assert_eq!(MapNotice::decode(&want).unwrap(), c);
        let big = vec![0u8; NOTICE_VALUE_BUDGET];
        let batch = MapNotice::encode_sets(1, 5, &[("a", &big), ("k", b"")]).unwrap();
        let mut want = header(1, 5, 4);
        want.extend_from_slice(b"\x02\x00\x00\x00\x01\x00\x00\x00a");
        want.extend_from_slice(&(NOTICE_VALUE_BUDGET as u32).to_le_bytes());
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\x01\x00\x00\x00k\x00\x00\x00\x00");
        assert_eq!(batch, want, "values that fit travel");
        let over = MapNotice::encode_sets(1, 5, &[("a", &big), ("k", b"x")]).unwrap();
        let all = MapNotice::decode_all(&over).unwrap();
        assert_eq!(all[1].change, MapChange::Changed { key: "k".into() });
        assert!(over.ends_with(b"\x01\x00\x00\x00k\xff\xff\xff\xff"));
        let one = MapNotice::encode_sets(300, 2, &[("k", b"v\x00")]).unwrap();
        assert_eq!(MapNotice::decode(&one).unwrap(), n);
        // Version 1 (postcard) frames from older writers still decode.
        assert_eq!(
            MapNotice::decode(b"\x01\xac\x02\x02\x00\x01k\x02v\x00").unwrap(),
            n
        );
        assert_eq!(MapNotice::decode(b"\x01\x01\x80\x01\x02").unwrap(), r);
    }

    #[test]
    fn bad_frames_are_malformed_not_panics() {
        for bad in [
            &b""[..],
            b"\x02\x01",
            b"\x01",
            b"\x01\x01\x01\x09",
            b"\x01\x01\x03\x03extra",
            b"\x02\x01\x00",
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00",
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x09",
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff",
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\xff",
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02extra",
            // A batch of zero sets, and a batch claiming more sets than it holds.
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00",
            b"\x02\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x04\x02\x00\x00\x00\x01\x00\x00\x00a\x00\x00\x00\x00",
        ] {
            assert!(
                matches!(MapNotice::decode(bad), Err(Error::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lists_round_trip_and_reject_garbage() {
        let items = vec![Bytes::new(), Bytes::from(vec![0xff; 300]), Bytes::from("x")];
        assert_eq!(decode_list(&encode_list(&items)).unwrap(), items);
        assert_eq!(encode_list(&[]), b"\x00");
        for bad in [
            &b""[..],
            b"\x01",
            b"\x01\x05ab",
            b"\x00z",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ] {
            assert!(
                matches!(decode_list(bad), Err(Error::Malformed { .. })),
                "{bad:?}"
            );
        }
    }
}
