//! A small map whose entries live for a fixed time: credentials and heads on the read path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlMap<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlMap {
            map: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, Instant::now()));
    }

    /// Updates an entry in place with `f`, or inserts `default` (a fresh entry either way).
    pub fn upsert(&self, key: K, default: V, f: impl FnOnce(&mut V)) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&key) {
            Some((v, at)) => {
                f(v);
                *at = Instant::now();
            }
            None => {
                map.insert(key, (default, Instant::now()));
            }
        }
    }

    pub fn remove(&self, key: &K) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn remove_where(&self, pred: impl Fn(&V) -> bool) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (v, _)| !pred(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_upsert_refreshes() {
        let m = TtlMap::new(Duration::from_millis(40), 2);
        m.put(1, "a");
        assert_eq!(m.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.get(&1), None);
        m.upsert(1, "b", |v| *v = "c");
        assert_eq!(m.get(&1), Some("c"));
        m.upsert(2, "d", |_| {});
        m.put(3, "e");
        assert_eq!(m.get(&3), Some("e"));
        m.remove_where(|v| *v == "e");
        assert_eq!(m.get(&3), None);
    }
}
