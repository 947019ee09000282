package audit

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"time"
)

// htmlPoint is one denial for the chart: time (ms since epoch) and series.
type htmlPoint struct {
	T int64  `json:"t"`
	S string `json:"s"`
}

type htmlData struct {
	Generated string
	Items     []*ReviewItem
	Changes   []*Event
	Points    template.JS
	ChangesJS template.JS
}

// WriteHTML writes the review as one self-contained HTML file: a timeline chart of
// denials by source and domain (drawn as SVG by inline script from inline data; nothing
// is fetched) and the tables below it.
func (r *Review) WriteHTML(w io.Writer, now time.Time) error {
	var pts []htmlPoint
	for _, it := range r.Items {
		if it.Event.Result != ResultDenied {
			continue
		}
		pts = append(pts, htmlPoint{it.Event.Time.UnixMilli(), it.Event.Source + ":" + ContextType(it.Event.SContext)})
	}
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].T < pts[j].T })
	var changes []htmlPoint
	for _, c := range r.Changes {
		changes = append(changes, htmlPoint{c.Time.UnixMilli(), c.RecordType + " " + c.Name})
	}
	pj, err := json.Marshal(pts)
	if err != nil {
		return fmt.Errorf("encode chart data: %w", err)
	}
	cj, err := json.Marshal(changes)
	if err != nil {
		return fmt.Errorf("encode chart data: %w", err)
	}
	return reviewTemplate.Execute(w, htmlData{
		Generated: now.UTC().Format(time.RFC3339),
		Items:     r.Items,
		Changes:   r.Changes,
		Points:    template.JS(pj),
		ChangesJS: template.JS(cj),
	})
}

var reviewTemplate = template.Must(template.New("review").Funcs(template.FuncMap{
	"ts":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
	"typ":   ContextType,
	"perms": joinPerms,
	"short": func(s string) string { return oneLine(s, 120) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>sepgadm joint audit review</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .denied{color:#b00} .db{background:#eef5ff} .os{background:#fff6e8}
#chart{border:1px solid #ccc;width:100%;height:320px}
.legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
</style></head><body>
<h1>Joint audit review: sepgsql and the OS audit log</h1>
<p>Generated {{.Generated}}. {{len .Items}} access decisions, {{len .Changes}} policy loads, enforce toggles and boolean changes.</p>
<h2>Denials over time, by source and domain</h2>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" data-rendered="0"></svg>
<div id="legend" class="legend"></div>
<script>
(function(){
var pts={{.Points}}, changes={{.ChangesJS}};
var svg=document.getElementById('chart'), NS='http://www.w3.org/2000/svg';
var W=svg.clientWidth||900, H=svg.clientHeight||320, L=50, B=30, T=10, R=10, N=60;
function el(n,a){var e=document.createElementNS(NS,n);for(var k in a)e.setAttribute(k,a[k]);svg.appendChild(e);return e;}
var series=[];pts.forEach(function(p){if(series.indexOf(p.s)<0)series.push(p.s);});
var pal=['#d62728','#1f77b4','#2ca02c','#ff7f0e','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
var all=pts.map(function(p){return p.t;}).concat(changes.map(function(c){return c.t;}));
if(all.length===0){el('text',{x:L,y:H/2}).textContent='no denials';svg.setAttribute('data-rendered','0');return;}
var t0=Math.min.apply(null,all), t1=Math.max.apply(null,all); if(t1===t0)t1=t0+1000;
var bw=(t1-t0)/N, counts=[];for(var i=0;i<N;i++){counts.push({});}
pts.forEach(function(p){var b=Math.min(N-1,Math.floor((p.t-t0)/bw));counts[b][p.s]=(counts[b][p.s]||0)+1;});
var max=1;counts.forEach(function(c){var s=0;for(var k in c)s+=c[k];if(s>max)max=s;});
var pw=(W-L-R)/N, ph=H-T-B, bars=0;
el('line',{x1:L,y1:T+ph,x2:W-R,y2:T+ph,stroke:'#333'});el('line',{x1:L,y1:T,x2:L,y2:T+ph,stroke:'#333'});
el('text',{x:4,y:T+10,'font-size':11}).textContent=max;el('text',{x:4,y:T+ph,'font-size':11}).textContent='0';
counts.forEach(function(c,i){var y=T+ph;series.forEach(function(s,j){var n=c[s]||0;if(!n)return;var h=n/max*ph;y-=h;
 var r=el('rect',{x:L+i*pw+1,y:y,width:Math.max(pw-2,1),height:h,fill:pal[j%pal.length],'class':'bar'});
 var tt=document.createElementNS(NS,'title');tt.textContent=s+': '+n;r.appendChild(tt);bars++;});});
changes.forEach(function(c){var x=L+(c.t-t0)/(t1-t0)*(W-L-R);el('line',{x1:x,y1:T,x2:x,y2:T+ph,stroke:'#555','stroke-dasharray':'4 3','class':'change'});
 var tt=document.createElementNS(NS,'title');tt.textContent=c.s;svg.lastChild.appendChild(tt);});
var d=function(t){return new Date(t).toISOString().substr(11,12);};
el('text',{x:L,y:H-8,'font-size':11}).textContent=d(t0);var e=el('text',{x:W-R,y:H-8,'font-size':11,'text-anchor':'end'});e.textContent=d(t1);
var lg=document.getElementById('legend');series.forEach(function(s,j){var sp=document.createElement('span');var i=document.createElement('i');i.style.background=pal[j%pal.length];sp.appendChild(i);sp.appendChild(document.createTextNode(s));lg.appendChild(sp);});
svg.setAttribute('data-rendered',String(bars));
})();
</script>
{{if .Changes}}<h2>Policy loads, enforce toggles, boolean changes</h2>
<table><tr><th>time</th><th>node</th><th>record</th><th>change</th><th>by</th></tr>
{{range .Changes}}<tr><td>{{ts .Time}}</td><td>{{.Node}}</td><td>{{.RecordType}}</td><td>{{.Name}}</td><td>{{.Comm}} {{.Exe}}</td></tr>
{{end}}</table>{{end}}
<h2>Access decisions</h2>
<table><tr><th>time</th><th>src</th><th>result</th><th>perms</th><th>class</th><th>source type</th><th>target type</th><th>name</th><th>pid</th><th>client session</th><th>statement</th><th>related</th><th>after</th></tr>
{{range .Items}}<tr class="{{.Event.Source}}"><td>{{ts .Event.Time}}</td><td>{{.Event.Source}}</td><td class="{{.Event.Result}}">{{.Event.Result}}{{if .Event.Permissive}} (permissive){{end}}</td><td>{{perms .Event.Perms}}</td><td>{{.Event.TClass}}</td><td>{{typ .Event.SContext}}</td><td>{{typ .Event.TContext}}</td><td>{{short .Event.Name}}</td><td>{{.Event.PID}}</td>
<td>{{with .Session}}{{.SessionID}}: {{.ClientAddr}}{{if .PeerPID}} pid {{.PeerPID}}{{end}} {{.PeerLabel}} {{.DBUser}}@{{.Database}} as {{.Context}} ({{.ContextSource}}){{end}}</td>
<td>{{short .Event.Statement}}</td><td>{{range .Related}}{{.}}<br>{{end}}</td><td>{{with .After}}{{.RecordType}} {{.Name}}{{end}}</td></tr>
{{end}}</table>
</body></html>
`))
