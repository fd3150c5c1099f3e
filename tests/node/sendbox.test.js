// The unchanged sendbox component, transpiled by jco (`npm run transpile` -> gen/),
// sending through the Postfix on this machine, with a socket policy that lets it
// reach only the server it was given.
//
// Needs Postfix on 127.0.0.1:25 (plaintext) and 127.0.0.1:465 (implicit TLS, AUTH);
// the `before` hook fails the run, rather than skipping, when :25 does not answer.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { instantiate } from './gen/sendbox.js';
import { confinedWasi } from './policy.js';

const POSTFIX_DIR = '/var/lib/sendbox-postfix';
const envelope = { sender: 'alice@sendbox.test', recipients: ['bob@sendbox.test'], recipientsFromHeaders: false };
const message = {
  tag: 'raw',
  val: new TextEncoder().encode(
    'From: alice@sendbox.test\r\nTo: bob@sendbox.test\r\nSubject: sendbox under Node\r\n\r\nHello from jco.\r\n',
  ),
};
const options = { requireTls: false };
const plaintext = (port, more = {}) => ({
  host: '127.0.0.1', port, addresses: ['127.0.0.1'], tls: 'insecure-plaintext', transcript: false, ...more,
});

// The core modules are compiled once; every test instantiates the component anew
// with its own grant, so each instance can reach only its own server.
const compiled = new Map();
const getCoreModule = (name) => {
  if (!compiled.has(name)) {
    compiled.set(name, readFile(new URL(`./gen/${name}`, import.meta.url)).then((b) => WebAssembly.compile(b)));
  }
  return compiled.get(name);
};
async function mailSender(grant, denied = []) {
  const imports = confinedWasi(grant, { onDenied: (what) => denied.push(what) });
  return (await instantiate(getCoreModule, imports)).mailSender;
}

// `send` is synchronous: the shim runs sockets in a worker thread and blocks this
// thread on Atomics.wait until each call returns. Time it around the call.
function timed(t, fn) {
  const start = performance.now();
  try {
    return fn();
  } finally {
    t.diagnostic(`send took ${(performance.now() - start).toFixed(1)} ms`);
  }
}

// A listener that only counts connections. While `send` blocks this thread its
// 'connection' events cannot run (the kernel still completes the handshake), so
// read the count only after letting the event loop turn.
async function countingListener() {
  let connections = 0;
  const server = net.createServer((socket) => { connections += 1; socket.destroy(); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    async connections() { await sleep(100); return connections; },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

before(async () => {
  // Fail loudly, not skip: these tests are about talking to this Postfix.
  const greeting = await new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: 25, timeout: 5000 });
    socket.once('data', (data) => { socket.end('QUIT\r\n'); resolve(String(data)); });
    socket.once('timeout', () => { socket.destroy(); reject(new Error('no SMTP greeting from 127.0.0.1:25 in 5 s')); });
    socket.once('error', (e) => reject(new Error(`Postfix is not reachable on 127.0.0.1:25: ${e.message}`)));
  });
  assert.match(greeting, /^220 /, 'Postfix on 127.0.0.1:25 should greet with 220');
});

test('delivers to Postfix on the granted 127.0.0.1:25', async (t) => {
  const denied = [];
  const sender = await mailSender({ addresses: ['127.0.0.1'], port: 25 }, denied);
  const delivery = timed(t, () => sender.send(plaintext(25), undefined, envelope, message, options));
  assert.deepEqual(delivery.accepted, ['bob@sendbox.test']);
  assert.deepEqual(delivery.refused, []);
  assert.equal(delivery.finalReply.code, 250);
  assert.match(delivery.finalReply.text, /queued as/);
  assert.deepEqual(denied, []);
});

test('builds a composed message in the component (clock and randomness from the Node shim)', async (t) => {
  const sender = await mailSender({ addresses: ['127.0.0.1'], port: 25 });
  const composed = {
    from: { address: 'alice@sendbox.test' },
    to: [{ name: 'Bob', address: 'bob@sendbox.test' }],
    cc: [],
    bcc: [{ address: 'carol@sendbox.test' }],
    replyTo: [],
    subject: 'Grüße from jco',
    text: 'Built inside the component.\n',
    attachments: [{ filename: 'a.bin', mediaType: 'application/octet-stream', content: new Uint8Array([0, 1, 2, 255]) }],
    headers: [],
  };
  const fromHeaders = { recipients: [], recipientsFromHeaders: true };
  const delivery = timed(t, () => sender.send(plaintext(25), undefined, fromHeaders, { tag: 'composed', val: composed }, options));
  // The envelope came from the message: its To and its Bcc.
  assert.deepEqual(delivery.accepted, ['bob@sendbox.test', 'carol@sendbox.test']);
  assert.equal(delivery.finalReply.code, 250);
});

test('delivers over implicit TLS with AUTH on the granted 127.0.0.1:465 (rustls in the component)', async (t) => {
  const caPem = await readFile(`${POSTFIX_DIR}/ca.pem`, 'utf8');
  const password = (await readFile(`${POSTFIX_DIR}/password`, 'utf8')).trim();
  const sender = await mailSender({ addresses: ['127.0.0.1'], port: 465 });
  const server = { host: '127.0.0.1', port: 465, addresses: ['127.0.0.1'], tls: 'implicit', caPem, transcript: false };
  const delivery = timed(t, () => sender.send(server, { username: 'sendbox', secret: { tag: 'password', val: password } }, envelope, message, options));
  assert.equal(delivery.finalReply.code, 250);
  assert.match(delivery.finalReply.text, /queued as/);
});

test('refuses a port it was not granted, and nothing connects there', async (t) => {
  const listener = await countingListener();
  t.after(listener.close);
  const denied = [];
  const sender = await mailSender({ addresses: ['127.0.0.1'], port: 25 }, denied);
  assert.throws(
    () => timed(t, () => sender.send(plaintext(listener.port), undefined, envelope, message, options)),
    (error) => {
      assert.equal(error.payload?.phase, 'connect');
      assert.equal(error.payload.kind, 'network');
      assert.match(error.payload.message, /access denied/);
      return true;
    },
  );
  assert.deepEqual(denied, [`connect 127.0.0.1 ${listener.port}`]);
  assert.equal(await listener.connections(), 0);
});

test('control: the same listener does see the component when its port is granted', async (t) => {
  // Without this, "0 connections" above could mean the listener sees nothing.
  const listener = await countingListener();
  t.after(listener.close);
  const sender = await mailSender({ addresses: ['127.0.0.1'], port: listener.port });
  const quick = {
    connectMs: 2000, greetingMs: 200, commandMs: 200, mailMs: 0, rcptMs: 0,
    dataStartMs: 0, dataBlockMs: 0, dataEndMs: 0, totalMs: 0,
  };
  // The listener never greets (this thread is blocked anyway), so the component
  // gets past connect and gives up waiting for the greeting.
  assert.throws(
    () => timed(t, () => sender.send(plaintext(listener.port, { timeouts: quick }), undefined, envelope, message, options)),
    (error) => error.payload?.phase === 'greeting' && error.payload.kind === 'timeout',
  );
  assert.equal(await listener.connections(), 1);
});

test('the policy refuses other addresses, bind, listen, UDP and DNS', () => {
  // Straight on the import object: the component itself never does these.
  const denied = [];
  const imports = confinedWasi({ addresses: ['127.0.0.1'], port: 25 }, { onDenied: (what) => denied.push(what) });
  const network = imports['wasi:sockets/instance-network'].instanceNetwork();
  const tcp = () => imports['wasi:sockets/tcp-create-socket'].createTcpSocket('ipv4');
  const v4 = (address, port) => ({ tag: 'ipv4', val: { address, port } });
  const v6 = (address, port) => ({ tag: 'ipv6', val: { address, port, flowInfo: 0, scopeId: 0 } });

  assert.throws(() => tcp().startConnect(network, v4([127, 0, 0, 2], 25)), /^access-denied$/);
  assert.throws(() => tcp().startConnect(network, v6([0, 0, 0, 0, 0, 0, 0, 1], 25)), /^access-denied$/);
  assert.throws(() => tcp().startBind(network, v4([127, 0, 0, 1], 0)), /^access-denied$/);
  assert.throws(() => tcp().startBind(network, v4([0, 0, 0, 0], 2525)), /^access-denied$/);
  assert.throws(() => tcp().startListen(), /^access-denied$/);
  assert.throws(() => imports['wasi:sockets/udp-create-socket'].createUdpSocket('ipv4'), /^access-denied$/);
  assert.throws(() => imports['wasi:sockets/ip-name-lookup'].resolveAddresses(network, 'localhost'),
    /^permanent-resolver-failure$/);
  assert.deepEqual(denied, [
    'connect 127.0.0.2 25', 'connect ::1 25', 'bind 127.0.0.1 0', 'bind 0.0.0.0 2525', 'listen', 'udp', 'resolve',
  ]);
});
