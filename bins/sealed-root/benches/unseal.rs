//! Host figures for the sealed root's hot paths on an image file, through the real Zymkey stack
//! (client → drop-in library → zymkey-emu over a unix socket): unseal + volume check (what
//! keybound-init does before activation), and enrolment with the reduced recovery KDF.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn.

#[path = "../tests/common/mod.rs"]
#[allow(unreachable_pub)]
mod common;

use std::time::Duration;

use common::{Module, fresh_volume, vendor};
use criterion::{Criterion, criterion_group, criterion_main};
use sealed_root::{RecoveryKdf, enroll, unseal};

fn bench(c: &mut Criterion) {
    sealed_root::silence_libcryptsetup_log();
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let zk = m.open();
    let (_, recipient) = vendor();
    enroll(&img, &vk, &zk, &recipient, RecoveryKdf::ReducedForTests).unwrap();

    let mut g = c.benchmark_group("sealed-root");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.bench_function("unseal+verify_volume", |b| {
        b.iter(|| unseal(&img, &zk).unwrap().verify_volume(&img).unwrap())
    });
    g.bench_function("format_fresh+enroll (reduced recovery KDF)", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir_in(tmp.path()).unwrap();
            let (img, vk) = fresh_volume(dir.path(), "e.img");
            enroll(&img, &vk, &zk, &recipient, RecoveryKdf::ReducedForTests).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
