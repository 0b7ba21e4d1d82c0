//! Hot swaps: readers use the model millions of times while a writer swaps 1,000 times;
//! every read sees a whole, consistent model and none fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use modelgate::model::{LoadError, ModelLoader, ModelSlot};

/// A model whose fields are redundant: they must always agree.
struct Model {
    version: u64,
    doubled: u64,
    weights: Vec<u64>,
    checksum: u64,
}

impl Model {
    fn new(version: u64) -> Self {
        let weights: Vec<u64> = (0..16).map(|i| version * 1000 + i).collect();
        Model {
            version,
            doubled: version * 2,
            checksum: weights.iter().sum(),
            weights,
        }
    }
    fn is_whole(&self) -> bool {
        self.doubled == self.version * 2
            && self.weights.len() == 16
            && self
                .weights
                .iter()
                .enumerate()
                .all(|(i, &w)| w == self.version * 1000 + i as u64)
            && self.weights.iter().sum::<u64>() == self.checksum
    }
}

#[test]
fn readers_see_whole_models_while_a_writer_swaps() {
    const SWAPS: u64 = 1000;
    const READS_PER_THREAD: u64 = 2_000_000;
    let slot = Arc::new(ModelSlot::new("m@0", Model::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let reads_done = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (slot, done, reads_done) = (slot.clone(), done.clone(), reads_done.clone());
            std::thread::spawn(move || {
                let mut versions_seen = std::collections::BTreeSet::new();
                let mut last = 0;
                let mut reads = 0u64;
                while reads < READS_PER_THREAD || !done.load(Ordering::Acquire) {
                    let guard = slot.load();
                    let current = guard.as_ref().expect("the slot is never empty");
                    assert!(
                        current.model.is_whole(),
                        "torn model at version {}",
                        current.model.version
                    );
                    assert_eq!(&*current.version, format!("m@{}", current.model.version));
                    assert!(current.model.version >= last, "a reader went back in time");
                    last = current.model.version;
                    versions_seen.insert(last);
                    reads += 1;
                    if reads == READS_PER_THREAD {
                        reads_done.fetch_add(1, Ordering::AcqRel);
                    }
                }
                (reads, versions_seen.len())
            })
        })
        .collect();
    for version in 1..=SWAPS {
        let old = slot
            .store(&format!("m@{version}"), Model::new(version))
            .expect("previous model");
        assert_eq!(old.model.version, version - 1);
    }
    done.store(true, Ordering::Release);
    let mut distinct = 0;
    for r in readers {
        let (reads, seen) = r.join().expect("no reader panicked");
        assert!(reads >= READS_PER_THREAD);
        distinct += seen;
    }
    assert!(distinct >= 3, "readers saw the final version at least");
    assert_eq!(slot.load().as_ref().map(|m| m.model.version), Some(SWAPS));
}

#[test]
fn a_request_finishes_on_the_model_it_started_with() {
    let slot = ModelSlot::new("m@1", Model::new(1));
    let in_flight = slot.load();
    slot.store("m@2", Model::new(2));
    // The old model is still alive and whole for the request that holds it.
    assert_eq!(in_flight.as_ref().map(|m| m.model.version), Some(1));
    assert!(in_flight.as_ref().is_some_and(|m| m.model.is_whole()));
    assert_eq!(slot.version().as_deref(), Some("m@2"));
}

#[test]
fn loaders_are_plain_functions_or_types() {
    let loader = |reference: &str, _location: Option<&str>| -> Result<Model, LoadError> {
        match reference.strip_prefix("m@").and_then(|v| v.parse().ok()) {
            Some(version) => Ok(Model::new(version)),
            None => Err(LoadError::Unknown {
                reference: reference.into(),
            }),
        }
    };
    assert!(loader.load("m@7", None).is_ok_and(|m| m.version == 7));
    let err = loader.load("ranker", None).err().expect("unknown");
    assert!(err.to_string().contains("ranker"));
}
