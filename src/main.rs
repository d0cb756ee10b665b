//! The `oauth-sidecar` command line: parses the arguments and hands them to
//! [`oauth_sidecar::cli::run`], where the commands live.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    oauth_sidecar::cli::run(oauth_sidecar::cli::Cli::parse())
}

/// glibc gives each thread that allocates its own malloc arena, up to 8 per
/// core, and keeps what an arena freed: the store's connection threads, the
/// argon2 threads and the runtime's workers then hold tens of MiB that one
/// flood of requests touched. The sidecar's threads are few and its
/// allocations short, so one arena per core keeps its memory bounded (as
/// `MALLOC_ARENA_MAX` would; the variable still wins when set).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tuning value of glibc's allocator, and
        // runs before this process starts any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
