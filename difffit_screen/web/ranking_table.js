(function () {
  var table = document.getElementById('ranking');
  var holder = document.getElementById('ranking-data');
  if (!table || !holder) { return; }
  var status = document.getElementById('ranking-status');
  function note(text) { status.textContent = text; }
  if (typeof DecompressionStream === 'undefined') {
    note('first rows only: this browser cannot unpack the full table (see ranking.tsv)');
    return;
  }
  var text = atob(holder.textContent.trim()), bytes = new Uint8Array(text.length);
  for (var b = 0; b < text.length; b++) { bytes[b] = text.charCodeAt(b); }
  text = null;
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(stream).text().then(function (json) { start(JSON.parse(json)); })
    .catch(function (err) {
      note('cannot read the table: ' + err);
      document.dispatchEvent(new Event('difffit-table-ready'));
    });

  function start(doc) {
    var n = doc.n, cols = {}, names = doc.columns, isText = {};
    doc.text.forEach(function (c) { isText[c] = true; });
    Object.keys(doc.data).forEach(function (c) {
      var d = doc.data[c];
      if (d && d.dict) {
        cols[c] = d.codes.map(function (k) { return k < 0 ? null : d.dict[k]; });
      } else { cols[c] = d; }
    });
    var haystack = null;  /* built on the first search */
    function buildHaystack() {
      haystack = new Array(n);
      var search = doc.search.map(function (c) { return cols[c]; });
      for (var i = 0; i < n; i++) {
        var parts = [];
        for (var j = 0; j < search.length; j++) { parts.push(search[j][i] || ''); }
        haystack[i] = parts.join('\u0001').toLowerCase();
      }
    }
    var order = new Int32Array(n);
    for (var i = 0; i < n; i++) { order[i] = i; }
    var shown = order, page = 0, size = parseInt(document.getElementById('ranking-page-size').value, 10);
    var sortKey = null, asc = true;
    var body = table.tBodies[0];
    var isFloat = {};
    doc.floats.forEach(function (c) { isFloat[c] = true; });
    function fmt(c, v) {
      if (v === null || v === undefined) { return ['', '']; }
      if (c === 'fit_ok') { return [v ? 'yes' : 'no', v ? '1' : '0']; }
      if (c === 'pvalue' || c === 'qvalue') { return [String(Number(v.toPrecision(3))), String(v)]; }
      if (c === 'zscore') { return [v.toFixed(2), String(v)]; }
      if (isFloat[c]) { return [v.toFixed(4), String(v)]; }
      return [String(v), String(v)];
    }
    function esc(s) {
      return String(s).replace(/[&<>"']/g, function (ch) {
        return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[ch];
      });
    }
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / size));
      page = Math.min(Math.max(page, 0), pages - 1);
      var start = page * size, end = Math.min(shown.length, start + size), html = [];
      for (var k = start; k < end; k++) {
        var i = shown[k], q = cols.qvalue[i], cells = [];
        names.forEach(function (c) {
          var f = fmt(c, cols[c][i]), inner = esc(f[0]);
          if (c === 'name' && f[0] && /^https?:\/\//i.test(cols.url[i] || '')) {
            inner = '<a href="' + esc(cols.url[i]) + '" target="_blank" rel="noopener">' + inner + '</a>';
          }
          cells.push('<td' + (isText[c] ? ' class="text"' : '') + ' data-value="' + esc(f[1]) + '">' + inner + '</td>');
        });
        var m = doc.models[cols.candidate[i]];
        var cell = !m ? '' : (!m[0] ? '<span class="error">not exported</span>' :
          '<span class="swatch" style="background:' + esc(m[1]) + '"></span> <a href="' +
          esc(m[0]) + '">' + esc(m[0].split('/').pop()) + '</a>');
        cells.push('<td class="text">' + cell + '</td>');
        html.push((q !== null && q < doc.q_hit ? '<tr class="hit">' : '<tr>') + cells.join('') + '</tr>');
      }
      body.innerHTML = html.join('');
      note(shown.length ? 'rows ' + (start + 1) + '\u2013' + end + ' of ' + shown.length +
           (shown.length < n ? ' (filtered from ' + n + ')' : '') : 'no matching rows (of ' + n + ')');
      document.getElementById('ranking-prev').disabled = page === 0;
      document.getElementById('ranking-next').disabled = page >= pages - 1;
    }
    function compare(c) {
      var v = cols[c];
      return function (a, b) {
        var x = v[a], y = v[b];
        if (x === null || x === undefined) { return (y === null || y === undefined) ? a - b : 1; }
        if (y === null || y === undefined) { return -1; }
        var r = x < y ? -1 : (x > y ? 1 : 0);
        return (asc ? r : -r) || a - b;
      };
    }
    function apply() {
      var query = document.getElementById('ranking-search').value.trim().toLowerCase();
      var base = order;
      if (sortKey !== null) { base = Int32Array.from(order).sort(compare(sortKey)); }
      if (query) {
        if (haystack === null) { buildHaystack(); }
        var terms = query.split(/\s+/);
        shown = base.filter(function (i) {
          return terms.every(function (t) { return haystack[i].indexOf(t) >= 0; });
        });
      } else { shown = base; }
      page = 0;
      draw();
    }
    table.querySelectorAll('th').forEach(function (th) {
      var key = th.getAttribute('data-key');
      if (!key || !(key in cols)) { return; }
      th.addEventListener('click', function () {
        asc = !(sortKey === key && asc);
        sortKey = key;
        table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
        th.setAttribute('data-order', asc ? 'asc' : 'desc');
        apply();
      });
    });
    var timer = null;
    document.getElementById('ranking-search').addEventListener('input', function () {
      clearTimeout(timer); timer = setTimeout(apply, 120);
    });
    document.getElementById('ranking-prev').addEventListener('click', function () { page--; draw(); });
    document.getElementById('ranking-next').addEventListener('click', function () { page++; draw(); });
    document.getElementById('ranking-page-size').addEventListener('change', function (e) {
      size = parseInt(e.target.value, 10); page = 0; draw();
    });
    document.getElementById('ranking-export').addEventListener('click', function () {
      var lines = [names.concat(['url']).join('\t')];
      for (var k = 0; k < shown.length; k++) {
        var i = shown[k];
        lines.push(names.concat(['url']).map(function (c) {
          var v = cols[c][i]; return v === null || v === undefined ? '' : String(v);
        }).join('\t'));
      }
      var a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], {type: 'text/tab-separated-values'}));
      a.download = 'ranking_shown.tsv';
      document.body.appendChild(a); a.click(); a.remove();
    });
    draw();
    window.difffitTableReadyMs = performance.now();
    table.setAttribute('data-ready', '1');
    document.dispatchEvent(new Event('difffit-table-ready'));
  }
})();
