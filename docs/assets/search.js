// The docs site's search box: offline, over window.SEARCH_INDEX (search-index.js, written by tools/build_docs.py):
// [title, url, kind, context] for every page, every section of a notebook page and every name of the API.
// Every word typed must occur in the title or the context; names that start with the first word rank first.
(function () {
  const box = document.getElementById("search"), list = document.getElementById("search-results");
  if (!box || !list || !Array.isArray(window.SEARCH_INDEX)) return;
  box.hidden = false;
  const items = window.SEARCH_INDEX.map(([t, u, k, c]) => ({ t, u, k, c, low: t.toLowerCase(), all: (t + " " + c).toLowerCase() }));
  const rank = { function: 0, class: 0, method: 1, property: 2, page: 1, section: 2, constant: 3 };
  function score(it, words) {
    if (!words.every(w => it.all.includes(w))) return null;
    const i = it.low.indexOf(words[0]);
    return (it.low === words[0] ? 0 : i === 0 ? 1 : i > 0 ? 2 : 3) * 10 + rank[it.k] + it.t.length / 1000;
  }
  function render() {
    const words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    list.replaceChildren();
    if (!words.length) { list.hidden = true; return; }
    const hits = items.map(it => [score(it, words), it]).filter(h => h[0] !== null).sort((a, b) => a[0] - b[0]).slice(0, 20);
    for (const [, it] of hits) {
      const li = document.createElement("li"), a = document.createElement("a"), k = document.createElement("span");
      a.href = it.u; a.textContent = it.t; k.className = "kind"; k.textContent = it.k + (it.c ? " · " + it.c : "");
      a.appendChild(k); li.appendChild(a); list.appendChild(li);
    }
    if (!hits.length) { const li = document.createElement("li"); li.className = "none"; li.textContent = "nothing found"; list.appendChild(li); }
    list.hidden = false;
  }
  box.addEventListener("input", render);
  box.addEventListener("keydown", e => {
    const first = list.querySelector("a");
    if (e.key === "Enter" && first) location.href = first.href;
    if (e.key === "Escape") { box.value = ""; render(); }
  });
  document.addEventListener("click", e => { if (e.target !== box && !list.contains(e.target)) list.hidden = true; });
})();
