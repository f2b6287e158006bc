(function () {
  var views = window.difffitViewers = {};
  function show(el) {
    if (el.getAttribute('data-state')) { return; }
    el.setAttribute('data-state', 'loading');
    var payload = JSON.parse(document.getElementById(el.getAttribute('data-payload')).textContent);
    if (typeof $3Dmol === 'undefined') {
      el.textContent = '3D view unavailable: the viewer library did not load.';
      el.setAttribute('data-state', 'error'); return;
    }
    try {
      var viewer = $3Dmol.createViewer(el, {backgroundColor: 'white', antialias: true});
      if (!viewer) { throw new Error('WebGL is not available in this browser'); }
      var model = viewer.addModel(payload.pdb, 'pdb');
      viewer.setStyle({}, {cartoon: {color: payload.colour}});
      var volume = new $3Dmol.VolumeData(payload.map, 'ccp4.gz');
      var surface = viewer.addIsosurface(volume, {isoval: payload.level, color: payload.surface,
                                                  opacity: 0.55, smoothness: 1});
      viewer.zoomTo();
      viewer.render();
      views[el.getAttribute('data-rank')] = {viewer: viewer, atoms: model.selectedAtoms({}).length,
                                             surface: surface, level: payload.level,
                                             readyMs: performance.now()};
      el.setAttribute('data-state', 'ready');
    } catch (err) {
      el.textContent = '3D view unavailable: ' + err.message;
      el.setAttribute('data-state', 'error');
    }
  }
  var els = document.querySelectorAll('.viewer3d');
  function begin() {
    if (begin.done) { return; }
    begin.done = true;
    if ('IntersectionObserver' in window) {
      var observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (e.isIntersecting) { observer.unobserve(e.target); show(e.target); }
        });
      }, {rootMargin: '200px'});
      els.forEach(function (el) { observer.observe(el); });
    } else {
      els.forEach(show);
    }
  }
  /* the ranking table unpacks first (it is the page's heavy part); viewers start after it */
  var table = document.getElementById('ranking');
  if (table && !table.getAttribute('data-ready')) {
    document.addEventListener('difffit-table-ready', begin);
    setTimeout(begin, 5000);
  } else {
    begin();
  }
  document.querySelectorAll('button.viewer-reset').forEach(function (b) {
    b.addEventListener('click', function () {
      var v = views[b.getAttribute('data-rank')];
      if (v) { v.viewer.zoomTo(); v.viewer.render(); }
    });
  });
})();
