//! What the simulation tests share.

use std::sync::Mutex;

/// Runs `run_seed` for every seed on two threads (the CI machine has two
/// cores): the stats merged with `merge`, or every failure.
pub fn run_seeds<S: Default + Send>(
    seeds: &[u64],
    run_seed: impl Fn(u64) -> Result<S, String> + Sync,
    merge: impl Fn(&mut S, &S) + Sync,
) -> Result<S, Vec<String>> {
    let next = Mutex::new(seeds.iter());
    let total = Mutex::new(S::default());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some(&seed) = next.lock().unwrap().next() else {
                    return;
                };
                match run_seed(seed) {
                    Ok(stats) => merge(&mut total.lock().unwrap(), &stats),
                    Err(msg) => failures.lock().unwrap().push(msg),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        Ok(total.into_inner().unwrap())
    } else {
        Err(failures)
    }
}
