// Data: the websocket connection, binary frame decoding, and what the page holds.

/** Decode a frame: uint32 header length, JSON header, float32 arrays (no copies). */
export function decodeFrame(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const base = 4 + length;
  const arrays = {};
  for (const spec of header.arrays) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    arrays[spec.name] = { shape: spec.shape, data: new Float32Array(buffer, base + spec.offset, count) };
  }
  delete header.arrays;
  return { header, arrays };
}

/** Largest absolute value of a Float32Array (0 for an empty or all-zero one). */
export function maxAbs(values) {
  let best = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (v > best && Number.isFinite(v)) best = v;
  }
  return best;
}

/** Everything the page knows: state mirror, images, maps, the latest pixel frame. */
export class Store {
  constructor() {
    this.state = null;          // the server's ViewerState snapshot
    this.inputs = [];           // Float32Array per input, [0, 1]
    this.inputNames = [];
    this.models = {};           // name -> {radius, local, method, pixel_ms, fused, maps: {kind: {...}}}
    this.pixelFrame = null;     // the latest painted pixel answer
    this.selection = null;      // Uint8Array mask of brushed / drawn pixels
    this.blank = null;          // why the slice in view has no images (constant in an input)
    this.gamma = { guidance: 1, jacobian: 0.5 };
  }

  get shape() { return this.state ? this.state.shape : [0, 0]; }

  /** "axis,index" of the slice in view ("" for 2-D images). */
  get sliceKey() { return sliceKey(this.state && this.state.volume); }

  model(name) {
    if (!this.models[name]) this.models[name] = { maps: {} };
    return this.models[name];
  }

  applyImages(header, arrays) {
    if (sliceKey(header.state.volume) !== this.sliceKey || (this.state && this.state.shape.join() !== header.state.shape.join())) {
      for (const model of Object.values(this.models)) model.maps = {};  // another slice's maps
      this.selection = null;
      this.pixelFrame = null;
    }
    this.state = header.state;
    this.blank = header.blank || null;
    if (this.blank) return;
    this.inputNames = header.inputs;
    this.inputs = Object.keys(arrays).filter((k) => k.startsWith("input_")).sort()
      .map((k) => arrays[k].data);
    for (const [name, info] of Object.entries(header.models)) {
      const model = this.model(name);
      Object.assign(model, info);
      model.fused = arrays[`${name}/fused`].data;
      let lo = Infinity, hi = -Infinity;
      for (const v of model.fused) { if (v < lo) lo = v; if (v > hi) hi = v; }
      model.fusedRange = [lo, hi];
    }
  }

  /** A maps frame: the job's progress and its (partial or finished) maps. */
  applyMaps(header, arrays) {
    if (!this.current(header)) return;
    const maps = this.applyProgress(header);
    maps.arrays = {};
    const prefix = `${header.model}/`;
    for (const [key, value] of Object.entries(arrays)) maps.arrays[key.slice(prefix.length)] = value.data;
  }

  /** A progress frame: state, passes, times; the maps already held stay. */
  applyProgress(header) {
    if (!this.current(header)) return null;
    const model = this.model(header.model);
    const held = model.maps[header.map_kind];
    const maps = {
      state: header.state, done: header.done, total: header.total, finished: header.finished,
      error: header.error || null, elapsed_s: header.elapsed_s, remaining_s: header.remaining_s,
      predicted_s: header.predicted_s, estimate: Boolean(header.estimate), error_bound: header.error_bound,
      estimates: Boolean(header.estimates), arrays: held ? held.arrays : {},
    };
    if (header.state === "none") return maps;
    model.maps[header.map_kind] = maps;
    return maps;
  }

  /** Whether a maps, progress or pixel frame is of the slice in view. */
  current(header) {
    return header.slice === undefined || sliceKey(header.slice) === this.sliceKey;
  }

  /** The maps shown for a model: guidance_k, or influence_k shares. */
  shownMaps(name) {
    const kind = this.state.map_kind;
    const maps = this.model(name).maps[kind];
    if (!maps) return [];
    return this.inputs.map((_, k) => maps.arrays[`${kind}_${k}`] || null);
  }

  /** One range shared by the maps of every model in view (symmetric for guidance). */
  sharedMapRange() {
    if (this.state.map_kind === "influence") return 1;
    let best = 0;
    for (const name of this.state.in_view) {
      for (const values of this.shownMaps(name)) if (values) best = Math.max(best, maxAbs(values));
    }
    return best || 1;
  }

  /** One Jacobian range shared by all inputs and models of the latest pixel frame. */
  sharedJacobianRange() {
    if (!this.pixelFrame) return 1;
    let best = 0;
    for (const info of Object.values(this.pixelFrame.header.models)) best = Math.max(best, info.jacobian_range);
    return best || 1;
  }
}

/** "axis,index" of a volume snapshot or a frame's [axis, index] ("" for none). */
export function sliceKey(where) {
  if (!where) return "";
  return Array.isArray(where) ? where.join() : `${where.axis},${where.index}`;
}

/**
 * Take the access token out of the address bar (and so out of the history and of
 * bookmarks). The server answered the URL that carried it with an HttpOnly cookie, which
 * authorises the page's later requests; the token itself is kept only for the websocket.
 */
export function takeToken() {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  if (token !== null) {
    params.delete("token");
    const rest = params.toString();
    const clean = `${window.location.pathname}${rest ? `?${rest}` : ""}${window.location.hash}`;
    window.history.replaceState(window.history.state, "", clean);
  }
  return token;
}

/** The websocket: sends JSON messages, hands decoded frames to `onFrame`. */
export class Connection {
  constructor(onFrame, onClose, token = null) {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${window.location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.sent = 0;
    this.queue = [];
    this.socket.onmessage = (event) => onFrame(decodeFrame(event.data));
    this.socket.onclose = onClose;
    this.socket.onopen = () => { for (const m of this.queue.splice(0)) this.send(m); };
  }

  send(message) {
    if (this.socket.readyState !== WebSocket.OPEN) { this.queue.push(message); return; }
    this.sent += 1;
    this.socket.send(JSON.stringify(message));
  }
}
