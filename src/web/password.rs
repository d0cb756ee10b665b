//! argon2id hashing for user passwords and for client secrets set by hand.
//!
//! Hashes are PHC strings (`$argon2id$v=19$...`) with the crate's default
//! parameters (RFC 9106's second recommendation: 19 MiB, 2 passes). Hashing
//! and checking are slow on purpose; async callers run them with
//! [`hash_blocking`] and [`verify_blocking`], off the reactor threads.
//!
//! Each check holds 19 MiB and a core for its duration, so the whole crate
//! runs at most as many at once as there are cores (one semaphore, whoever
//! asks: sign-in forms, the password grant, client secrets), on as many
//! threads of its own: memory the allocator keeps after a hash stays with
//! those few threads, instead of spreading over the many threads of
//! Tokio's blocking pool. A check waits at most [`ARGON2_WAIT`] for its turn
//! and then gives up with [`Busy`] (the token endpoint answers 503 with
//! `Retry-After`), so a flood of requests queues a bounded time and never
//! holds a 19 MiB buffer per request.
//!
//! ```
//! use oauth_sidecar::web::password;
//!
//! let phc = password::hash("correct horse battery staple").unwrap();
//! assert!(phc.starts_with("$argon2id$"));
//! assert!(password::verify(&phc, "correct horse battery staple"));
//! assert!(!password::verify(&phc, "wrong"));
//! ```

use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use tokio::sync::Semaphore;

/// Hashes `secret` with argon2id and a random salt; the PHC string.
pub fn hash(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// True when `secret` matches the PHC string `phc` (argon2 compares in
/// constant time); false for a malformed hash.
pub fn verify(phc: &str, secret: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

/// How long a check waits for one of the argon2 slots before it gives up.
pub const ARGON2_WAIT: Duration = Duration::from_secs(2);

/// The crate's argon2 slots: one per core, and as many threads.
static SLOTS: LazyLock<Slots> = LazyLock::new(Slots::start);

/// A job for an argon2 thread.
type Job = Box<dyn FnOnce() + Send>;

/// The semaphore and the threads that run the jobs it admits.
struct Slots {
    permits: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Slots {
    fn start() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                loop {
                    // A poisoned lock only means another argon2 thread panicked.
                    let job = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an argon2 thread");
            }
        }
        Slots { permits: Arc::new(Semaphore::new(threads)), jobs: Mutex::new(jobs) }
    }

    /// Runs `work` on an argon2 thread once a slot is free, waiting at most
    /// `wait` (for ever without); the slot is held until `work` returns,
    /// even if the caller stops waiting. `None` when no slot freed in time.
    async fn run<T: Send + 'static>(
        &self,
        wait: Option<Duration>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let permit = self.permits.clone().acquire_owned();
        let permit = match wait {
            Some(wait) => tokio::time::timeout(wait, permit).await.ok()?.ok()?,
            None => permit.await.ok()?,
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = done.send(work());
        });
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(job).ok()?;
        result.await.ok()
    }
}

/// Every argon2 slot stayed taken for [`ARGON2_WAIT`]: the check was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again shortly")]
pub struct Busy;

/// [`hash`] on an argon2 thread, once a slot is free (it waits as long as
/// it takes: hashing is for operators, not for the public).
pub async fn hash_blocking(secret: String) -> Result<String, String> {
    SLOTS.run(None, move || hash(&secret)).await.unwrap_or_else(|| Err("the argon2 threads stopped".into()))
}

/// [`verify`] on an argon2 thread, once a slot is free; [`Busy`] when none
/// freed within [`ARGON2_WAIT`].
pub async fn verify_blocking(phc: String, secret: String) -> Result<bool, Busy> {
    SLOTS.run(Some(ARGON2_WAIT), move || verify(&phc, &secret)).await.ok_or(Busy)
}
