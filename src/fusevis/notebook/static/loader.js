// Loads the widget's ES modules (the viewer's and widget.js) from their sources, held
// below, as blob URLs: each module's relative imports ("./views.js") are pointed at the
// blob URL of the module they name, in dependency order. No bundler, nothing fetched.
const MODULES = __FUSEVIS_MODULES__;
let loading = null;

function load() {
  if (loading === null) {
    const urls = {};
    for (const [name, source] of MODULES) {
      const code = source.replace(/from\s+"\.\/([\w-]+\.js)"/g, (_, dep) => `from "${urls[dep]}"`);
      urls[name] = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    }
    loading = import(urls["widget.js"]);
  }
  return loading;
}

export default {
  async render({ model, el }) {
    const widget = await load();
    return widget.mount(model, el);
  },
};
