// The sender made by `sendbox grant` (the grant composed in front of it), transpiled by
// jco and run with jco's default preview2-shim, which lets a guest connect anywhere.
// The grant inside the component is what keeps it to one server. `npm run grant` makes
// gen-granted/ (a grant of 127.0.0.1:25, and one of 127.0.0.1:465).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { instantiate as instantiate25 } from './gen-granted/25/granted-25.js';
import { instantiate as instantiate465 } from './gen-granted/465/granted-465.js';

const envelope = { sender: 'alice@sendbox.test', recipients: ['bob@sendbox.test'], recipientsFromHeaders: false };
const options = { requireTls: false };
const plaintext = (port) => ({ host: '127.0.0.1', port, addresses: ['127.0.0.1'], tls: 'insecure-plaintext', transcript: false });
const raw = (subject) => ({
  tag: 'raw',
  val: new TextEncoder().encode(`From: alice@sendbox.test\r\nTo: bob@sendbox.test\r\nSubject: ${subject}\r\n\r\nThrough the grant, under jco.\r\n`),
});

async function granted(instantiate, dir) {
  const getCoreModule = (name) => readFile(new URL(`./gen-granted/${dir}/${name}`, import.meta.url)).then((b) => WebAssembly.compile(b));
  // jco's stock shim, network and all: no policy of ours.
  return (await instantiate(getCoreModule, new WASIShim().getImportObject())).mailSender;
}

async function mailbox() {
  return readFile('/var/mail/vhosts/sendbox.test/bob', 'utf8').catch(() => '');
}

async function waitFor(predicate, what) {
  for (let i = 0; i < 300; i += 1) {
    if (await predicate()) return;
    await sleep(100);
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('the granted sender delivers to its server under the open shim', async () => {
  const subject = `granted-jco-${process.pid}-${Date.now()}`;
  const sender = await granted(instantiate25, '25');
  const delivery = sender.send(plaintext(25), undefined, envelope, raw(subject), options);
  assert.deepEqual(delivery.accepted, ['bob@sendbox.test']);
  assert.equal(delivery.finalReply.code, 250);
  await waitFor(async () => (await mailbox()).includes(subject), `${subject} in bob's mailbox`);
});

test('a sender granted another port is refused under the open shim, and nothing connects', async () => {
  let connections = 0;
  const listener = net.createServer((socket) => { connections += 1; socket.destroy(); });
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address();
  try {
    const sender = await granted(instantiate465, '465');
    for (const tried of [25, port]) {
      assert.throws(
        () => sender.send(plaintext(tried), undefined, envelope, raw('refused'), options),
        (error) => {
          assert.equal(error.payload?.phase, 'connect', `port ${tried}`);
          assert.equal(error.payload.kind, 'network');
          assert.equal(error.payload.transient, false);
          assert.match(error.payload.message, /access denied/);
          return true;
        },
      );
    }
    // `send` blocked this thread; let the listener's events run before counting.
    await sleep(100);
    assert.equal(connections, 0);
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

test('control: the open shim alone lets the un-granted sender connect anywhere', async () => {
  // Without this, the refusals above could be the shim's doing rather than the grant's.
  const { instantiate } = await import('./gen/sendbox.js');
  // `send` blocks this thread, so the listener cannot answer: the sender gives up waiting
  // for a greeting after 300 ms (0 keeps a limit's default), and the connection is
  // counted once the event loop runs again.
  let connections = 0;
  const listener = net.createServer((socket) => { connections += 1; socket.destroy(); });
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address();
  const quick = {
    connectMs: 0, greetingMs: 300, commandMs: 0, mailMs: 0, rcptMs: 0,
    dataStartMs: 0, dataBlockMs: 0, dataEndMs: 0, totalMs: 0,
  };
  try {
    const getCoreModule = (name) => readFile(new URL(`./gen/${name}`, import.meta.url)).then((b) => WebAssembly.compile(b));
    const sender = (await instantiate(getCoreModule, new WASIShim().getImportObject())).mailSender;
    assert.throws(
      () => sender.send({ ...plaintext(port), timeouts: quick }, undefined, envelope, raw('open'), options),
      (error) => error.payload?.kind === 'timeout',
    );
    await sleep(100);
    assert.equal(connections, 1);
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});
