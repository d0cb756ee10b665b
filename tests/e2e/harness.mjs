// Harness for the browser end-to-end tests: runs the real oauth-sidecar
// binary on a config in a temporary folder, drives Debian's chromium with
// playwright-core, and saves a screenshot of each page visited
// (oidc_provider.mjs beside it runs an outside provider on another port).
//
// It builds nothing: the binary comes from OAUTH_SIDECAR_BIN, else
// target/debug/oauth-sidecar under the repository root. Screenshots go to
// target/e2e/screenshots/<test>-<step>.png, each sidecar's log lines to
// target/e2e/logs/<test>.log (the sidecar logs no secrets; this harness
// prints none). scripts/test.sh runs them; by hand, from the repository root:
//
//   cargo build --bin oauth-sidecar && (cd tests/e2e && npm ci)
//   node --test tests/e2e/oauth_flows.test.mjs

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

/** The repository root (this file is tests/e2e/harness.mjs). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The binary under test. */
export const binary = process.env.OAUTH_SIDECAR_BIN
  ? path.resolve(process.env.OAUTH_SIDECAR_BIN)
  : path.join(repoRoot, 'target/debug/oauth-sidecar');

/** Where screenshots and logs go. */
export const outDir = path.join(repoRoot, 'target/e2e');

/** Debian's chromium and the flags the tests run it with. */
export const chromiumPath = '/usr/bin/chromium';
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

// Every sidecar process still running, killed if the test process exits
// without its teardown (a crash, an uncaught error).
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A random secret (base64url), for passwords, client secrets and keys. */
export function secret(bytes = 24) {
  return randomBytes(bytes).toString('base64url');
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One oauth-sidecar: a temp folder with sidecar.yaml and a SQLite store,
 * the CLI run on that config, and `serve` started and stopped.
 */
export class Sidecar {
  /**
   * Writes the config for a test named `name`: a free loopback port, the
   * public URL on it, `upstream: demo`, a SQLite store in the temp folder,
   * JSON logs, a short shutdown grace, then the YAML `configure` returns.
   * `configure` gets `{ port, origin, dir, tokenKey }`; `tokenKey` is a
   * fresh 32-byte key for `client.token_key`. `host` is the public URL's
   * host name (the listener is on 127.0.0.1 either way).
   */
  static async create(name, configure = () => '', { host = '127.0.0.1' } = {}) {
    const port = await freePort();
    const origin = `http://${host}:${port}`;
    return Sidecar.fromYaml(name, port, origin, (dir) => {
      const tokenKey = randomBytes(32).toString('base64');
      return [
        `listen: 127.0.0.1:${port}`,
        `public_url: ${origin}`,
        'upstream: demo',
        `store: sqlite://${path.join(dir, 'data/sidecar.db')}`,
        'log: { level: info, format: json }',
        'shutdown_grace: 2s',
        configure({ port, origin, dir, tokenKey }),
      ].join('\n');
    });
  }

  /**
   * A sidecar on the whole YAML `yaml(dir)` returns, written to
   * sidecar.yaml in a new temp folder `dir`, which is also the working
   * directory of every command (relative paths in the file start there).
   * `port` is its listener's, `origin` its public URL's origin.
   */
  static async fromYaml(name, port, origin, yaml) {
    if (!existsSync(binary)) {
      throw new Error(
        `no oauth-sidecar binary at ${binary}: build it (cargo build --bin oauth-sidecar) ` +
          'or set OAUTH_SIDECAR_BIN',
      );
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), `oauth-sidecar-e2e-${name}-`));
    const config = path.join(dir, 'sidecar.yaml');
    await writeFile(config, `${yaml(dir)}\n`);
    await mkdir(path.join(outDir, 'logs'), { recursive: true });
    await writeFile(logFile(name), '');
    return new Sidecar(name, dir, config, port, origin);
  }

  constructor(name, dir, config, port, origin) {
    this.name = name;
    this.dir = dir;
    this.config = config;
    this.port = port;
    this.origin = origin;
    this.child = null;
    this.exited = null;
    this.lines = [];
  }

  /** `origin + path`. */
  url(pathAndQuery = '/') {
    return `${this.origin}${pathAndQuery}`;
  }

  /** `http://127.0.0.1:<port>` + path: the listener, whatever the public URL's host. */
  loopbackUrl(pathAndQuery = '/') {
    return `http://127.0.0.1:${this.port}${pathAndQuery}`;
  }

  /**
   * Runs `oauth-sidecar ARGS --config sidecar.yaml` with `input` on
   * standard input; resolves to `{ code, stdout, stderr }`.
   */
  cliStatus(args, { input = '' } = {}) {
    return new Promise((resolve, reject) => {
      const child = spawn(binary, [...args, '--config', this.config], {
        cwd: this.dir,
        env: withoutRustLog(),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input);
    });
  }

  /** Like `cliStatus`, but fails unless the command exits 0; resolves to stdout. */
  async cli(args, options) {
    const { code, stdout, stderr } = await this.cliStatus(args, options);
    if (code !== 0) {
      throw new Error(`oauth-sidecar ${args.join(' ')} exited with ${code}:\n${stderr}`);
    }
    return stdout;
  }

  /**
   * `oauth-sidecar user add NAME --password-file F ...flags`, the password
   * written to a file in the temp folder (so it is on no command line).
   */
  async addUser(username, password, flags = []) {
    const file = path.join(this.dir, `password-${username}`);
    await writeFile(file, `${password}\n`, { mode: 0o600 });
    return this.cli(['user', 'add', username, '--password-file', file, ...flags]);
  }

  /** Starts `serve` and waits until /readyz answers 200 (at most `timeoutMs`). */
  async start({ timeoutMs = 30_000 } = {}) {
    if (this.child) throw new Error(`sidecar ${this.name} is already running`);
    const log = createWriteStream(logFile(this.name), { flags: 'a' });
    const child = spawn(binary, ['serve', '--config', this.config], {
      cwd: this.dir,
      env: withoutRustLog(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    running.add(child);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
    });
    const collect = (stream) => {
      let rest = '';
      stream.on('data', (chunk) => {
        const parts = (rest + chunk).split('\n');
        rest = parts.pop();
        for (const line of parts) {
          this.lines.push(line);
          log.write(`${line}\n`);
        }
      });
      stream.on('end', () => {
        if (rest) {
          this.lines.push(rest);
          log.write(`${rest}\n`);
        }
      });
    };
    collect(child.stdout);
    collect(child.stderr);
    child.on('close', () => log.end());

    let gone = null;
    this.exited.then((status) => (gone = status));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (gone) {
        throw new Error(
          `sidecar ${this.name} exited (${gone.code ?? gone.signal}) before it was ready:\n${this.logTail()}`,
        );
      }
      try {
        const res = await fetch(this.loopbackUrl('/readyz'), { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`sidecar ${this.name} was not ready within ${timeoutMs} ms:\n${this.logTail()}`);
  }

  /** Sends SIGTERM, waits up to 10 s, then SIGKILL; resolves to the exit status. */
  async stop() {
    if (!this.child) return null;
    const child = this.child;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(resolve, 10_000, null)));
    const status = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (status) return status;
    child.kill('SIGKILL');
    return this.exited;
  }

  /** The last `n` log lines, for failure messages. */
  logTail(n = 40) {
    const tail = this.lines.slice(-n);
    return tail.length ? tail.join('\n') : '(no log lines)';
  }

  /** The first log line containing every one of `needles`, or undefined. */
  findLog(...needles) {
    return this.lines.find((line) => needles.every((n) => line.includes(n)));
  }

  /** Removes the temp folder (the sidecar must be stopped). */
  async remove() {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** target/e2e/logs/<name>.log: emptied when the sidecar is created, appended to by each start. */
function logFile(name) {
  return path.join(outDir, 'logs', `${name}.log`);
}

/** A URL with its query values left out (a code or token may be there). */
export function withoutQueryValues(href) {
  try {
    const url = new URL(href);
    if (!url.protocol.startsWith('http')) return href;
    const names = [...url.searchParams.keys()];
    return `${url.origin}${url.pathname}${names.length ? `?${names.join('=…&')}=…` : ''}`;
  } catch {
    return '(not a URL)';
  }
}

function withoutRustLog() {
  const env = { ...process.env };
  delete env.RUST_LOG;
  return env;
}

/** Launches Debian's chromium, headless, with the tests' flags. */
export function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
}

/**
 * `page.goto(url)` that also resolves to the response when it is an error
 * status without a body (Chromium then fails the navigation with
 * ERR_HTTP_RESPONSE_CODE_FAILURE).
 */
export async function visit(page, url) {
  let last = null;
  const onResponse = (res) => {
    if (res.request().isNavigationRequest() && res.frame() === page.mainFrame()) last = res;
  };
  page.on('response', onResponse);
  try {
    return await page.goto(url);
  } catch (err) {
    if (last && String(err.message).includes('ERR_HTTP_RESPONSE_CODE_FAILURE')) return last;
    throw err;
  } finally {
    page.off('response', onResponse);
  }
}

/**
 * Signs in on the sidecar's sign-in page (the one of /oauth/authorize,
 * /oauth/start and the admin pages): waits for it, fills in `username` and
 * `password` and presses "Sign in".
 */
export async function signIn(page, username, password) {
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/**
 * Clicks through /oauth/start's confirmation page (a GET only shows it; its
 * button posts the start, which goes on to the provider); the page's text.
 */
export async function confirmStart(page) {
  await page.getByRole('heading', { name: 'Connect an account?' }).waitFor();
  const text = await page.locator('body').innerText();
  await page.getByRole('button', { name: /^Continue to / }).click();
  return text;
}

/**
 * A `shot(page, step)` for the test `test`: saves a full-page screenshot as
 * target/e2e/screenshots/<test>-<NN>-<step>.png, NN counting the test's
 * pages in order. The test's screenshots from an earlier run are removed
 * first.
 */
export async function screenshots(test) {
  const folder = path.join(outDir, 'screenshots');
  await mkdir(folder, { recursive: true });
  for (const file of await readdir(folder)) {
    if (file.startsWith(`${test}-`) && file.endsWith('.png')) await rm(path.join(folder, file));
  }
  let n = 0;
  return async function shot(page, step) {
    n += 1;
    const slug = step.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
    const file = path.join(folder, `${test}-${String(n).padStart(2, '0')}-${slug}.png`);
    await page.screenshot({ path: file, fullPage: true });
    return file;
  };
}

/**
 * The pieces of a browser test named `test`: sidecars made with
 * `sidecar()`, browser contexts made with `newPage()`, the screenshot
 * helper, `guard(fn)` to run a test body with failure notes, and
 * `close()` to stop it all.
 */
export async function openBrowserEnv(test) {
  const shot = await screenshots(test);
  const sidecars = [];
  const contexts = [];
  const browser = await launchBrowser();
  return {
    shot,
    /**
     * Creates a sidecar (not started) that `close()` stops and removes;
     * `options` as for `Sidecar.create`.
     */
    async sidecar(configure, suffix = '', options = {}) {
      const s = await Sidecar.create(`${test}${suffix}`, configure, options);
      sidecars.push(s);
      return s;
    },
    /** `Sidecar.fromYaml`, stopped and removed by `close()` like the others. */
    async sidecarFromYaml(port, origin, yaml, suffix = '') {
      const s = await Sidecar.fromYaml(`${test}${suffix}`, port, origin, yaml);
      sidecars.push(s);
      return s;
    },
    /**
     * A new browser context (its own cookies) and a page in it. Waits
     * time out after 10 s: every page is local.
     */
    async newPage() {
      const context = await browser.newContext();
      context.setDefaultTimeout(10_000);
      contexts.push(context);
      return context.newPage();
    },
    /**
     * Runs `fn`; when it throws, saves each open page as a `failure`
     * screenshot and adds the pages' URLs (without query values) and each
     * sidecar's last log lines to the error message.
     */
    async guard(fn) {
      try {
        return await fn();
      } catch (err) {
        const notes = [];
        for (const context of contexts) {
          for (const page of context.pages()) {
            notes.push(`page: ${withoutQueryValues(page.url())}`);
            try {
              notes.push(`screenshot: ${await shot(page, 'failure')}`);
            } catch {
              // the page is gone
            }
          }
        }
        for (const s of sidecars) notes.push(`--- ${s.name} log (last lines) ---\n${s.logTail()}`);
        if (err instanceof Error) {
          const note = `\n${notes.join('\n')}`;
          if (typeof err.stack === 'string') err.stack = err.stack.replace(err.message, err.message + note);
          err.message += note;
        }
        throw err;
      }
    },
    /** Closes the browser, then stops and removes every sidecar. */
    async close() {
      await browser.close();
      for (const s of sidecars) {
        await s.stop();
        await s.remove();
      }
    },
  };
}

/**
 * One browser test: `run(env)` with the pieces of `openBrowserEnv`,
 * guarded (failure screenshots and log lines), all closed after `t`.
 */
export async function browserTest(t, test, run) {
  const env = await openBrowserEnv(test);
  t.after(() => env.close());
  await env.guard(() => run(env));
}
