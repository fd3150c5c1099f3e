// A wasi:sockets policy for the sendbox component under jco's Node preview2-shim.
//
// The shim lets a guest connect anywhere: its only switch is all-or-nothing
// (WASIShim `sandbox.enableNetwork`). The component never resolves names; the
// embedder resolves `server.host` and should let it reach exactly
// `server.addresses` on `server.port`. `confinedWasi(grant)` returns a jco import
// object that does that: TCP connects only to the granted address:port pairs,
// bind only to the unspecified address with port 0, no listen/accept, no UDP, no
// DNS. Everything else (clocks, random, streams, stderr) is the stock shim, with
// an empty environment and no preopened directories.
import { isIP } from 'node:net';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { createSockets } from '@bytecodealliance/preview2-shim/sockets';

// A refusal is thrown as the WASI `error-code` case name: jco's glue lowers a
// thrown string into the guest's `result<_, error-code>`.
const DENIED = 'access-denied';

// One canonical text per address, so "::1", "0:0::1" and the guest's eight u16
// segments compare equal (the WHATWG URL parser compresses IPv6).
function canonical(ip) {
  if (isIP(ip) === 4) return ip.split('.').map(Number).join('.');
  if (isIP(ip) === 6) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  throw new TypeError(`not an IP address literal: ${ip}`);
}

// A wasi:sockets `ip-socket-address` as "address port".
function endpoint({ tag, val }) {
  const address = tag === 'ipv4' ? val.address.join('.') : canonical(val.address.map((s) => s.toString(16)).join(':'));
  return `${address} ${val.port}`;
}

/**
 * Imports for `instantiate(getCoreModule, imports)` of a component transpiled
 * with `jco transpile --instantiation`.
 *
 * @param {{ addresses: string[], port: number }} grant  the IP literals and port
 *   the component may connect to: the `server.addresses` and `server.port` it is
 *   about to be given.
 * @param {{ onDenied?: (what: string) => void }} [options]  told of each refusal.
 */
export function confinedWasi(grant, { onDenied = () => {} } = {}) {
  const allowed = new Set(grant.addresses.map((a) => `${canonical(a)} ${grant.port}`));
  const deny = (what) => { onDenied(what); throw DENIED; };

  // A fresh socket namespace, with its own `network` capability, per instance.
  const base = createSockets();

  // The checks, run before the shim (and its I/O worker) sees the address.
  const guards = {
    startConnect(socket, network, remote) {
      if (!allowed.has(endpoint(remote))) deny(`connect ${endpoint(remote)}`);
      return socket.startConnect(network, remote);
    },
    startBind(socket, network, local) {
      // An explicit bind may only ask for "any address, ephemeral port".
      if (endpoint(local) !== '0.0.0.0 0' && endpoint(local) !== ':: 0') deny(`bind ${endpoint(local)}`);
      return socket.startBind(network, local);
    },
    // A mail client never accepts connections.
    startListen: () => deny('listen'),
    accept: () => deny('accept'),
  };

  // jco checks that createTcpSocket returns an `instanceof TcpSocket` (the class
  // imported as wasi:sockets/tcp) and then calls the methods on that very
  // object. The shim's TcpSocket keeps its state in #private fields, so it can
  // be neither subclassed from outside nor called with a Proxy as `this`. A
  // Proxy whose prototype is still the shim's class passes the instanceof
  // check, runs the guards, and forwards everything else to the real socket.
  const confine = (socket) => new Proxy(socket, {
    get(target, key) {
      if (Object.hasOwn(guards, key)) return (...args) => guards[key](target, ...args);
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const tcpCreateSocket = {
    createTcpSocket: (family) => confine(base.tcpCreateSocket.createTcpSocket(family)),
  };

  // The component imports neither UDP nor ip-name-lookup today; should a later
  // build import them, they are refused rather than left open.
  const ipNameLookup = {
    ...base.ipNameLookup,
    resolveAddresses() { onDenied('resolve'); throw 'permanent-resolver-failure'; },
  };
  const udpCreateSocket = { createUdpSocket: () => deny('udp') };

  return new WASIShim({
    sockets: { ...base, tcpCreateSocket, ipNameLookup, udpCreateSocket },
    sandbox: { env: {}, args: ['sendbox'], preopens: {} },
  }).getImportObject();
}
