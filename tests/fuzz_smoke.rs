//! Stable "smoke fuzz": runs every fuzz target body (fuzz/src/lib.rs, shared with the cargo-fuzz
//! targets) over ~50k fixed-seed pseudo-random and mutated inputs each, so CI exercises the wire
//! parsers for panics and broken invariants without a nightly toolchain.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod wtd_fuzz;

const ITERATIONS: usize = 50_000;

/// xorshift64*: deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        // Bias towards bytes that matter to varints, prefix integers and Huffman padding.
        const INTERESTING: [u8; 12] = [
            0x00, 0x01, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xd9, 0xfe, 0xff,
        ];
        if self.below(3) == 0 {
            INTERESTING[self.below(INTERESTING.len())]
        } else {
            self.next() as u8
        }
    }
}

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.below(max + 1);
    (0..len).map(|_| rng.byte()).collect()
}

/// One to four byte-level mutations of `input` (flip, set, insert, delete, truncate, duplicate).
fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                let b = rng.byte();
                v.insert(i, b);
            }
            3 if len > 0 => {
                v.remove(rng.below(len));
            }
            4 => v.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a) + 1;
                let slice = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, slice);
            }
            _ => {
                let at = rng.below(len + 1);
                let extra = random_bytes(rng, 8);
                v.splice(at..at, extra);
            }
        }
    }
    v
}

fn run(name: &str, target: fn(&[u8]), seed: u64) {
    let seeds = wtd_fuzz::seeds(name);
    assert!(!seeds.is_empty(), "{name} has seeds");
    for s in &seeds {
        target(s);
    }
    let mut rng = Rng(seed);
    for i in 0..ITERATIONS {
        let input = match rng.below(4) {
            0 => random_bytes(&mut rng, 64),
            3 => {
                // Splice two seeds, then mutate.
                let a = &seeds[rng.below(seeds.len())];
                let b = &seeds[rng.below(seeds.len())];
                let mut v = a[..rng.below(a.len() + 1)].to_vec();
                v.extend_from_slice(&b[rng.below(b.len() + 1)..]);
                mutate(&mut rng, v)
            }
            _ => {
                let v = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, v)
            }
        };
        let outcome = std::panic::catch_unwind(|| target(&input));
        assert!(
            outcome.is_ok(),
            "{name} failed on iteration {i}, input {}",
            input.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
}

#[test]
fn qpack_decode() {
    run("qpack_decode", wtd_fuzz::qpack_decode, 0x5eed_0001);
}

#[test]
fn settings_decode() {
    run("settings_decode", wtd_fuzz::settings_decode, 0x5eed_0002);
}

#[test]
fn capsule_stream() {
    run("capsule_stream", wtd_fuzz::capsule_stream, 0x5eed_0003);
}

#[test]
fn huffman_decode() {
    run("huffman_decode", wtd_fuzz::huffman_decode, 0x5eed_0004);
}

#[test]
fn encoder_stream() {
    run("encoder_stream", wtd_fuzz::encoder_stream, 0x5eed_0005);
}

#[test]
fn every_target_is_smoked() {
    let names: Vec<&str> = wtd_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "qpack_decode",
            "settings_decode",
            "capsule_stream",
            "huffman_decode",
            "encoder_stream"
        ]
    );
}
