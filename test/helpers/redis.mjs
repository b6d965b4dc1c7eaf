// A real redis-server for tests: started on a free local port in a temporary folder (append-only
// file on, as BullMQ's deployments run it, so a SIGKILL loses nothing it acknowledged), killed or
// restarted on the same port and folder on demand, and removed with its folder afterwards.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { execFileSync, spawn } from "node:child_process";

export const REDIS_SERVER = process.env.OVAM_REDIS_SERVER ?? "/usr/bin/redis-server";

// A port nothing listens on now (the kernel's choice for port 0).
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Resolves once the server answers PING on `port` (through TLS trusting `ca` when given); rejects after `timeoutMs` or if it exits.
function ready(child, port, timeoutMs, ca) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (error) => {
      if (settled) return;
      settled = true;
      child.off("exit", exited);
      error ? reject(error) : resolve();
    };
    const exited = (code, signal) => done(new Error(`redis-server exited at start (${signal ?? code})`));
    child.on("exit", exited);
    const attempt = () => {
      if (settled) return;
      const socket = ca ? tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca }) : net.connect(port, "127.0.0.1");
      let reply = "";
      socket.setTimeout(500);
      socket.on(ca ? "secureConnect" : "connect", () => socket.write("PING\r\n"));
      socket.on("data", (data) => {
        reply += data;
        if (reply.includes("\r\n")) {
          socket.destroy();
          // A password-protected server answers NOAUTH: it is up.
          if (reply.startsWith("+PONG") || reply.startsWith("-NOAUTH")) done();
          else retry();
        }
      });
      socket.on("error", () => retry());
      socket.on("timeout", () => {
        socket.destroy();
        retry();
      });
    };
    const retry = () => {
      if (settled) return;
      if (Date.now() > deadline) done(new Error(`redis-server did not answer on port ${port} within ${timeoutMs} ms`));
      else setTimeout(attempt, 50);
    };
    attempt();
  });
}

/**
 * Starts redis-server; returns { url, port, dir, ca, kill(), start(), stop() }. `kill()` SIGKILLs
 * it (waits for the exit), `start()` starts it again on the same port and folder, `stop()` ends
 * it and removes the folder. Options: `password` (requirepass); `tls` (TLS only, with a
 * self-signed certificate for localhost made by openssl: `ca` is its file, the url rediss://).
 */
export async function startRedis({ password, tls: useTLS = false, timeoutMs = 10_000 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-redis-"));
  const port = await freePort();
  let child;
  const args = ["--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"];
  let ca;
  if (useTLS) {
    ca = path.join(dir, "cert.pem");
    const key = path.join(dir, "key.pem");
    const subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"];
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-keyout", key, "-out", ca, ...subject], { stdio: "ignore" });
    args.push("--port", "0", "--tls-port", String(port), "--tls-cert-file", ca, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no");
  } else args.push("--port", String(port));
  if (password) args.push("--requirepass", password);
  const log = path.join(dir, "redis.log");
  const server = {
    port,
    dir,
    ca,
    url: `${useTLS ? "rediss" : "redis"}://${password ? `:${encodeURIComponent(password)}@` : ""}${useTLS ? "localhost" : "127.0.0.1"}:${port}`,
    async start() {
      const out = fs.openSync(log, "a");
      child = spawn(REDIS_SERVER, args, { stdio: ["ignore", out, out] });
      fs.closeSync(out);
      try {
        await ready(child, port, timeoutMs, ca && fs.readFileSync(ca));
      } catch (error) {
        child.kill("SIGKILL");
        throw new Error(`${error.message}\n${fs.readFileSync(log, "utf8").slice(-2000)}`);
      }
    },
    async kill(signal = "SIGKILL") {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill(signal);
      await exited;
    },
    async stop() {
      await server.kill("SIGTERM");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
