"""The pages' Jinja2 templates, style sheet and script, kept in Python (nothing to install beside
the package, nothing fetched from elsewhere: the pages' Content-Security-Policy allows only this
server's own style sheet and script and ``data:`` images)."""

from __future__ import annotations

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1d232a; background: #fafbfc; }
header { background: #23395d; color: #fff; padding: .6em 1.2em; display: flex; gap: 1.5em; align-items: baseline; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header .brand { font-size: 1.15em; }
header .who { margin-left: auto; font-size: .85em; opacity: .8; }
main { padding: 1em 1.5em; max-width: 1200px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; background: #fff; }
th, td { border: 1px solid #d4d9df; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.error { background: #fdecea; border: 1px solid #e0a3a0; padding: .6em 1em; border-radius: 4px; }
.note { background: #fff7e0; border: 1px solid #e6cf8a; padding: .5em 1em; border-radius: 4px; }
.ok { color: #1b6e2e; font-weight: 600; } .unsure { color: #9a5b00; font-weight: 600; }
.muted { color: #667; font-size: .85em; }
img.plot { max-width: 100%; background: #fff; border: 1px solid #d4d9df; }
#drop { border: 2px dashed #8aa0bd; border-radius: 8px; padding: 2em; text-align: center; background: #fff; }
#drop.over { background: #e8f0fb; }
form.inline { display: inline; }
code { background: #eef1f5; padding: 0 .2em; }
td.id, td.id a { white-space: nowrap; }
"""

UPLOAD_JS = """
(function () {
  var drop = document.getElementById('drop');
  var input = document.getElementById('files');
  if (!drop || !input) { return; }
  ['dragenter', 'dragover'].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      document.getElementById('upload-form').submit();
    }
  });
})();
"""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}xanesdb{% endblock %} - xanesdb</title>
<link rel="stylesheet" href="{{ url_for('static_file', name='style.css') }}">
</head><body>
<header><a class="brand" href="{{ url_for('summary') }}">xanesdb</a>
<a href="{{ url_for('summary') }}">Summary</a>
<a href="{{ url_for('materials') }}" id="nav-materials">Materials</a>
<a href="{{ url_for('upload') }}" id="nav-upload">Predict from a measured spectrum</a>
<span class="who">{{ who }} · read-only</span></header>
<main>{% block body %}{% endblock %}</main>
</body></html>
"""

ERROR = """{% extends "base.html" %}{% block title %}{{ title }}{% endblock %}{% block body %}
<h1>{{ title }}</h1>
<p class="error" id="error">{{ message }}</p>
<p class="muted">Nothing was read from or written to the database for this request.</p>
{% endblock %}"""

SUMMARY = """{% extends "base.html" %}{% block title %}Summary{% endblock %}{% block body %}
<h1>Computed XANES spectra</h1>
<p class="muted">Database <code>{{ db_name }}</code>:
{% for c, n in collections.items() %}{{ n }} {{ c }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
<h2>Spectra per absorber × geometry class × source</h2>
{% if counts.elements %}
<table id="spectra-counts"><tr><th rowspan="2">absorber</th>
{% for s in counts.sources %}<th colspan="{{ classes|length + 2 }}">{{ s }}</th>{% endfor %}<th rowspan="2">all</th></tr>
<tr>{% for s in counts.sources %}{% for c in classes %}<th>{{ c }}</th>{% endfor %}<th>other</th><th>total</th>{% endfor %}</tr>
{% for e in counts.elements %}<tr><th><a href="{{ url_for('materials', element=e) }}">{{ e }}</a></th>
{% set ns = namespace(all=0) %}
{% for s in counts.sources %}{% set ns2 = namespace(t=0) %}
{% for c in classes + ('other',) %}{% set n = counts.counts.get((e, s, c), 0) %}{% set ns2.t = ns2.t + n %}
<td class="n">{{ n or '' }}</td>{% endfor %}<td class="n"><b>{{ ns2.t or '' }}</b></td>{% set ns.all = ns.all + ns2.t %}
{% endfor %}<td class="n"><b>{{ ns.all }}</b></td></tr>{% endfor %}
</table>
<p class="muted">Spectra kept after deduplication ({{ counts.duplicates }} marked as duplicates are not counted);
"other": sites outside T4/S5/O6 or not labelled. Counted at {{ counted_at }} (recounted in the background every
few minutes).</p>
{% else %}<p class="note">No spectra yet: <code>xanesdb db load-bundled &amp;&amp; xanesdb spectra build</code>.</p>{% endif %}
<h2>Models and their scores</h2>
<table id="models"><tr><th>run</th><th>kind</th><th>absorber(s)</th><th>input</th><th>classes</th>
<th>spectra</th><th>macro F1 (test)</th>{% if any_knn %}<th>kNN-5 F1</th>{% endif %}<th>where</th><th>created</th></tr>
{% for m in models %}<tr><td class="id"><a href="{{ url_for('model', run_id=m.run_id) }}">{{ m.run_id }}</a></td>
<td>{{ m.kind }}</td><td>{{ m.elements }}</td><td>{{ m.representation }}</td><td>{{ m.classes|join(' ') }}</td>
<td class="n">{{ m.n_spectra }}</td>
<td class="n">{% if m.f1_macro is not none %}{{ '%.3f'|format(m.f1_macro) }}{% if m.f1_std is not none %} ± {{ '%.3f'|format(m.f1_std) }}{% endif %}{% endif %}</td>
{% if any_knn %}<td class="n">{% if m.knn is not none %}{{ '%.3f'|format(m.knn) }}{% endif %}</td>{% endif %}
<td>{{ m.where }}</td><td>{{ m.created }}</td></tr>
{% else %}<tr><td colspan="10">none registered or shipped</td></tr>{% endfor %}
</table>
<p class="muted">Macro F1: mean ± std over the run's networks on held-out materials (grouped splits).</p>
{% endblock %}"""

MATERIALS = """{% extends "base.html" %}{% block title %}Materials{% endblock %}{% block body %}
<h1>Materials{% if element %} with {{ element }}{% endif %}</h1>
<form method="get" action="{{ url_for('materials') }}">
<label>absorber <input name="element" size="3" value="{{ element or '' }}" placeholder="Fe"></label>
<label>formula or id <input name="q" size="24" value="{{ q or '' }}" placeholder="Fe2O3 or mp-19770"></label>
<button type="submit">Find</button></form>
<p class="muted">{{ result.total }} structures{% if result.pages > 1 %}, page {{ result.page }} of {{ result.pages }}{% endif %}.</p>
<table id="material-list"><tr><th>material</th><th>formula</th><th>source</th><th>elements</th><th>sites in cell</th></tr>
{% for m in result['items'] %}<tr><td><a class="material" href="{{ url_for('material', material_id=m.material_id) }}">{{ m.material_id }}</a></td>
<td>{{ m.formula }}</td><td>{{ m.source }}</td><td>{{ (m.elements or [])|join(' ') }}</td><td class="n">{{ m.nsites }}</td></tr>
{% endfor %}</table>
{% if result.page > 1 %}<a href="{{ url_for('materials', element=element, q=q, page=result.page - 1) }}">previous</a>{% endif %}
{% if result.page < result.pages %}<a id="next" href="{{ url_for('materials', element=element, q=q, page=result.page + 1) }}">next</a>{% endif %}
{% endblock %}"""

MATERIAL = """{% extends "base.html" %}{% block title %}{{ s.material_id }}{% endblock %}{% block body %}
<h1 id="formula">{{ s.formula }} <span class="muted">{{ s.material_id }}</span></h1>
<table><tr><th>source</th><td>{{ s.source }}</td></tr>
<tr><th>elements</th><td>{{ (s.elements or [])|join(' ') }}</td></tr>
<tr><th>sites in cell</th><td>{{ s.nsites }}</td></tr>
{% if s.lattice %}<tr><th>lattice</th><td>{% for k in ('a', 'b', 'c') %}{% if s.lattice[k] is not none %}{{ k }} {{ '%.3f'|format(s.lattice[k]) }} Å {% endif %}{% endfor %}
{% for k in ('alpha', 'beta', 'gamma') %}{% if s.lattice[k] is not none %}{{ k }} {{ '%.1f'|format(s.lattice[k]) }}° {% endif %}{% endfor %}</td></tr>{% endif %}
{% if s.provenance %}<tr><th>provenance</th><td>{{ s.provenance.origin }}{% if s.provenance.licence %} · {{ s.provenance.licence }}{% endif %}
{% if s.provenance.reference %} · {{ s.provenance.reference }}{% endif %}</td></tr>{% endif %}
{% if s.tags %}<tr><th>tags</th><td>{{ s.tags|join(', ') }}</td></tr>{% endif %}
</table>
<h2>Absorbing sites (symmetry-unique)</h2>
{% if sites %}<table id="sites"><tr><th>site</th><th>element</th><th>Wyckoff</th><th>multiplicity</th><th>ChemEnv</th><th>CSM</th>
<th>class</th><th>CN</th><th>mean bond / Å</th><th>neighbours</th><th>spectra</th><th>notes</th></tr>
{% for t in sites %}<tr><td>{{ t.site_index }}</td><td>{{ t.element }}</td><td>{{ t.wyckoff or '' }}</td><td class="n">{{ t.multiplicity }}</td>
<td>{{ t.chemenv_symbol or '-' }}</td><td class="n">{% if t.csm is not none %}{{ '%.2f'|format(t.csm) }}{% endif %}</td>
<td><b>{{ t.lce_class or 'other' }}</b></td><td class="n">{{ t.coordination_number if t.coordination_number is not none else '' }}</td>
<td class="n">{% if t.mean_bond_length is not none %}{{ '%.3f'|format(t.mean_bond_length) }}{% endif %}</td>
<td>{{ (t.neighbor_elements or [])|join(' ') }}</td>
<td>{% for sp in t.spectra %}{{ sp.preset }}/{{ sp.source }}{% if sp.duplicate_of %} (dup.){% endif %}{% if not loop.last %}, {% endif %}{% else %}-{% endfor %}</td>
<td>{% if t.state == 'failed' %}labelling failed: {{ t.error }}{% endif %}{% if t.ambiguous %}ambiguous: {{ (t.ambiguity_reasons or [])|join('; ') }}{% endif %}</td></tr>
{% endfor %}</table>{% else %}<p class="note">No labelled sites stored for this material.</p>{% endif %}
<h2>Site spectra</h2>
{% for el, uri in plots %}<p><img class="plot" id="spectra-{{ el }}" alt="{{ el }} K-edge spectra of {{ s.material_id }}" src="{{ uri }}"></p>
{% else %}<p class="note">No spectra stored for this material (build them with <code>xanesdb spectra build</code>).</p>{% endfor %}
{% endblock %}"""

MODEL = """{% extends "base.html" %}{% block title %}{{ d.run_id }}{% endblock %}{% block body %}
<h1>Model <span id="run-id">{{ d.run_id }}</span></h1>
<p class="muted">{{ d._where }}</p>
<table id="card"><tr><th>kind</th><td>{{ d.kind }} ({{ d.task or 'classification' }}), {{ representation }} input,
{{ (d.energies or [])|length }} energies{% if d.grid_name %} on {{ d.grid_name }}{% endif %}</td></tr>
<tr><th>learned</th><td>{{ d.label_field }}: {{ (d.classes or [])|join(', ') }}</td></tr>
<tr><th>training data</th><td>{{ d.n_spectra }} spectra; query <code>{{ query }}</code>; fingerprint <code>{{ d.fingerprint }}</code></td></tr>
{% if counts %}<tr><th>class counts</th><td>{% for c, n in counts.items() %}{{ c }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>{% endif %}
<tr><th>macro F1 (test)</th><td>{% if f1 %}{% for c, v in f1.items() %}{{ c }} {{ v }}{% if not loop.last %}; {% endif %}{% endfor %}{% else %}-{% endif %}</td></tr>
{% if knn %}<tr><th>kNN baseline</th><td>{{ knn }}</td></tr>{% endif %}
{% if calibration %}<tr><th>calibration</th><td>{{ calibration }}</td></tr>{% endif %}
<tr><th>hyper-parameters</th><td><code>{{ hyper }}</code></td></tr>
<tr><th>versions</th><td>{% for k, v in (d.versions or {}).items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
<tr><th>backend, device</th><td>{{ d.backend }}, {{ d.device }}</td></tr>
<tr><th>timings</th><td>{% for k, v in (d.timings or {}).items() %}{{ k }} {{ '%.1f'|format(v) }} s{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
<tr><th>created</th><td>{{ d.created }} (state {{ d.state }})</td></tr>
</table>
<h2>Confusion matrix</h2>
{% if confusion %}<p><img class="plot" id="confusion" alt="confusion matrix" src="{{ confusion }}"></p>
{% else %}<p class="note">This run stored no confusion matrix.</p>{% endif %}
<h2>Robustness</h2>
{% if robustness %}<p><img class="plot" id="robustness" alt="robustness curves" src="{{ robustness }}"></p>
{% else %}<p class="note">No robustness curves stored for this run (train with <code>--curves</code> to have them).</p>{% endif %}
{% endblock %}"""

UPLOAD = """{% extends "base.html" %}{% block title %}Predict{% endblock %}{% block body %}
<h1>Predict the site geometry of a measured spectrum</h1>
<form id="upload-form" method="post" enctype="multipart/form-data" action="{{ url_for('upload') }}">
<div id="drop"><p>Drop spectrum files here (XDI, Athena <code>.prj</code>, CSV or columns, FEFF <code>xmu.dat</code>), or
<input type="file" id="files" name="files" multiple></p>
<p class="muted">Up to {{ max_files }} files, {{ max_mb }} MB in all. Files are read in memory and a private temporary
folder that is removed at once; nothing is stored.</p></div>
<p><label>search method <select name="method"><option value="cosine"{% if opts.method == 'cosine' %} selected{% endif %}>cosine</option>
<option value="elsie"{% if opts.method == 'elsie' %} selected{% endif %}>elsie (ensemble)</option></select></label>
<label>nearest <input name="top" size="2" value="{{ opts.top }}"></label>
<label>references <select name="fidelity"><option value="none"{% if opts.fidelity == 'none' %} selected{% endif %}>as stored</option>
<option value="scf"{% if opts.fidelity == 'scf' %} selected{% endif %}>fast corrected towards scf</option>
<option value="scf+k-edge"{% if opts.fidelity == 'scf+k-edge' %} selected{% endif %}>corrected towards scf, calibrated to measurement</option></select></label></p>
<p class="muted">Column files only, when the reader cannot tell (raw beamline files):
<label>energy column <input name="energy_col" size="14" value="{{ opts.energy_col }}" placeholder="name or number"></label>
<label>mu column <input name="mu_col" size="14" value="{{ opts.mu_col }}" placeholder="e.g. ln(I0/It), If/I0"></label></p>
<p class="muted">Fluorescence from a thick, concentrated sample (self-absorption flattens the white line):
<label>sample formula <input name="formula" size="18" value="{{ opts.formula }}" placeholder="e.g. Fe2O3, Fe0.05B0.95N0.95"></label>
(incident and exit angles 45&deg;)</p>
<p><button type="submit" id="submit">Predict</button></p>
</form>
<script src="{{ url_for('static_file', name='upload.js') }}"></script>
{% if message %}<p class="error" id="error">{{ message }}</p>{% endif %}
{% if results %}<h2>Results</h2>
<table id="predictions"><tr><th>#</th><th>spectrum</th><th>absorber</th><th>answer</th><th>P(O6)</th><th>P(S5)</th><th>P(T4)</th><th>P(other)</th>
<th>outlier score</th><th>E half-step / eV</th><th>model</th><th>kNN-{{ knn_k }} of the nearest</th></tr>
{% for r in results %}<tr class="prediction"><td>{{ loop.index }}</td><td>{{ r.name }}</td><td>{{ r.absorber or '' }}</td>
{% if r.error %}<td colspan="9" class="error">{{ r.error }}</td>
{% else %}<td class="answer {{ 'unsure' if r.predicted == 'unsure' else 'ok' }}">{{ r.predicted }}{% if r.predicted == 'unsure' %} (best {{ r.best_class }}){% endif %}</td>
{% for c in ('O6', 'S5', 'T4', 'other') %}<td class="n">{% if c in r.probabilities %}{{ '%.2f'|format(r.probabilities[c]) }}{% endif %}</td>{% endfor %}
<td class="n">{{ '%.2f'|format(r.outlier_score) }}</td><td class="n">{% if r.e_half is not none %}{{ '%.1f'|format(r.e_half) }}{% endif %}</td>
<td>{% if r.model_link %}<a href="{{ url_for('model', run_id=r.model) }}">{{ r.model }}</a>{% else %}{{ r.model }}{% endif %}</td>{% endif %}
<td>{{ r.knn or '' }}</td></tr>
{% if r.reason %}<tr><td></td><td colspan="11" class="reason">unsure: {{ r.reason }}</td></tr>{% endif %}
{% if r.note %}<tr><td></td><td colspan="11" class="reason">note: {{ r.note }}</td></tr>{% endif %}
{% endfor %}</table>
{% for r in results %}{% if r.search %}<h2>{{ loop.index }}. {{ r.name }}: nearest computed spectra ({{ r.search.method }})</h2>
{% if r.search.error %}<p class="note">{{ r.search.error }}</p>{% else %}
{% if r.plot %}<p><img class="plot overlay" alt="{{ r.name }} over its nearest computed spectra" src="{{ r.plot }}"></p>{% endif %}
<table class="matches"><tr><th>#</th><th>material</th><th>formula</th><th>site</th><th>class</th><th>ChemEnv</th><th>similarity</th><th>shift / eV</th><th>preset</th><th>source</th></tr>
{% for m in r.search.matches %}<tr><td>{{ m.rank }}</td><td><a href="{{ url_for('material', material_id=m.material_id) }}">{{ m.material_id }}</a></td>
<td>{{ m.formula or '' }}</td><td>{{ m.site if m.site is not none else '' }}</td><td>{{ m.lce_class or 'other' }}</td><td>{{ m.chemenv_symbol or '' }}</td>
<td class="n">{{ '%.4f'|format(m.similarity) }}</td><td class="n">{{ '%+.1f'|format(m.shift_ev) }}</td><td>{{ m.preset or '' }}</td><td>{{ m.source or '' }}</td></tr>
{% endfor %}</table>{% endif %}{% endif %}{% endfor %}
{% if more_plots %}<p class="muted">Plots are drawn for the first {{ max_plots }} spectra; the tables cover all.</p>{% endif %}
{% endif %}
{% endblock %}"""

TEMPLATES = {"base.html": BASE, "error.html": ERROR, "summary.html": SUMMARY, "materials.html": MATERIALS,
             "material.html": MATERIAL, "model.html": MODEL, "upload.html": UPLOAD}  # fmt: skip
STATIC = {"style.css": ("text/css", STYLE), "upload.js": ("text/javascript", UPLOAD_JS)}
