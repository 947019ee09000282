package proxy

import (
	"github.com/sepgadm/sepgadm/sessionlog"

	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg          *prometheus.Registry
	clients      prometheus.Gauge
	logins       *prometheus.CounterVec
	tags         *prometheus.CounterVec
	tagSeconds   prometheus.Histogram
	refusedCalls prometheus.Counter
	labelDrift   prometheus.Counter

	// Totals for SHOW STATS (Prometheus counters cannot be read back cheaply). The
	// query and byte totals are also the Prometheus counters (CounterFunc), so a
	// transaction makes one atomic add for each, not two.
	nTags, nTagFailures, tagNanos, nQueries, nBytesIn, nBytesOut atomic.Int64
}

// tally counts one direction's traffic locally, so the relay touches the shared
// counters once per transaction instead of on every message (atomic adds on counters
// shared by every client bounce between cores).
type tally struct{ bytes, queries int64 }

// addIn and addOut move a tally into the totals and reset it.
func (m *metrics) addIn(t *tally) {
	if t.bytes != 0 {
		m.nBytesIn.Add(t.bytes)
	}
	*t = tally{}
}

func (m *metrics) addOut(t *tally) {
	if t.bytes != 0 {
		m.nBytesOut.Add(t.bytes)
	}
	if t.queries != 0 {
		m.nQueries.Add(t.queries)
	}
	*t = tally{}
}

func (m *metrics) tagDone(kind string, d time.Duration, ok bool) {
	m.tagSeconds.Observe(d.Seconds())
	m.tagNanos.Add(int64(d))
	m.nTags.Add(1)
	if ok {
		m.tags.WithLabelValues(kind, "ok").Inc()
		return
	}
	m.nTagFailures.Add(1)
	m.tags.WithLabelValues(kind, "failed").Inc()
}

// newMetrics makes the metrics; servers counts the open server connections on demand
// (pools open and close them in several places: login, reaping, lifetime, failures).
func newMetrics(servers func() float64) *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sepgadm_clients", Help: "Client sessions connected."}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sepgadm_client_logins_total",
			Help: "Client login attempts by result (ok, auth_failed, no_context, tag_failed, server_error, refused)."}, []string{"result"}),
		tags: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sepgadm_tags_total",
			Help: "Label switches by kind (client, reset) and result (ok, failed)."}, []string{"kind", "result"}),
		tagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sepgadm_tag_seconds",
			Help: "Latency of a label switch round trip.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		refusedCalls: prometheus.NewCounter(prometheus.CounterOpts{Name: "sepgadm_refused_switch_calls_total", Help: "Client statements refused for calling the switch function."}),
		labelDrift:   prometheus.NewCounter(prometheus.CounterOpts{Name: "sepgadm_label_drift_total", Help: "Idle server connections found under another label than the proxy left them with (verify_label = always)."}),
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sepgadm_server_connections", Help: "Server connections open."}, servers))
	total := func(name, help string, v *atomic.Int64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	m.reg.MustRegister(m.clients, m.logins, m.tags, m.tagSeconds, m.refusedCalls, m.labelDrift,
		total("sepgadm_ready_for_query_total", "ReadyForQuery messages relayed (completed queries and syncs).", &m.nQueries),
		total("sepgadm_client_bytes_total", "Bytes relayed from clients to servers.", &m.nBytesIn),
		total("sepgadm_server_bytes_total", "Bytes relayed from servers to clients.", &m.nBytesOut))
	return m
}

// sessionLog appends records to a file; a nil *sessionLog writes nothing.
type sessionLog struct {
	mu sync.Mutex
	f  *os.File
}

func openSessionLog(path string) (*sessionLog, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open session log: %w", err)
	}
	return &sessionLog{f: f}, nil
}

func (l *sessionLog) write(r sessionlog.Record) {
	if l == nil {
		return
	}
	r.Time = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *sessionLog) close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
