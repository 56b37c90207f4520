package xds

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Health is what /readyz says about xDS, as it is now: an error while the
// server does not listen; a warning naming the proxies whose last answer to
// their config was a NACK (they run on what they accepted before).
func (s *Server) Health() (warning string, err error) {
	if !s.listening.Load() {
		return "", errors.New("xds: not listening")
	}
	s.mu.Lock()
	var nacking []string
	for id, ns := range s.nodes {
		if ns.lastNack != nil && ns.lastNack.At.After(ns.ackedAt[ns.lastNack.TypeURL]) {
			nacking = append(nacking, id)
		}
	}
	s.mu.Unlock()
	if len(nacking) == 0 {
		return "", nil
	}
	sort.Strings(nacking)
	shown := nacking
	if len(shown) > 5 {
		shown = shown[:5]
	}
	more := ""
	if len(nacking) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(nacking)-len(shown))
	}
	return fmt.Sprintf("xds: %d proxies rejected their latest config (NACK) and run on what they accepted before: %s%s (see /api/v1/proxies)",
		len(nacking), strings.Join(shown, ", "), more), nil
}
