// The cytoscape stylesheets of the topology graph. Pure data, so which
// costly properties each mode carries is unit-tested without a browser.
//
// Small graphs get the full picture (bezier edges with arrows and labels,
// node labels, compound service boxes). Large graphs get one sheet, "large",
// at every zoom: what cytoscape spends a large graph's first frame on is
// applying each property of each element (every property set costs a
// dirtying of the element and its edges' caches), computing edge control
// points and measuring labels. So the large sheet sets as few properties
// as it can (none that equal cytoscape's defaults), draws haystack edges
// (no control points, no arrows: the layered layout puts callers left of
// callees) and gives labels a min-zoomed-font-size, which cytoscape checks
// when drawing, so names appear when zoomed in without restyling anything.
// (Swapping stylesheets at a zoom threshold, as before, restyled all 25,000
// elements of a 5,000-node graph and froze the page for seconds.)

import type { StylesheetJson } from 'cytoscape';
import { HEALTH_COLOR } from './format';

/** Above this many nodes, the canvas trades eye candy for speed. */
export const LARGE_GRAPH = 150;

/**
 * Large graphs show node names from this zoom up (their 11 px font drawn at
 * 7 px or more: min-zoomed-font-size).
 */
export const LABEL_ZOOM = 7 / 11;

export type StyleMode = 'full' | 'large';
export type Theme = 'light' | 'dark';

/** The canvas colours of a theme (health colours are the same in both). */
export const PALETTE: Record<Theme, { node: string; unknown: string; label: string; edgeLabel: string; labelBg: string; box: string; boxBorder: string; boxText: string; failingBox: string; degradedBox: string }> = {
  light: { node: '#ffffff', unknown: '#f3f4f6', label: '#1f2937', edgeLabel: '#374151', labelBg: '#ffffff', box: '#f8fafc', boxBorder: '#94a3b8', boxText: '#334155', failingBox: '#fdf0e9', degradedBox: '#fff7e6' },
  dark: { node: '#111a2b', unknown: '#1e293b', label: '#e5e9f0', edgeLabel: '#cbd5e1', labelBg: '#0f1828', box: '#152033', boxBorder: '#475569', boxText: '#cbd5e1', failingBox: '#2a1a14', degradedBox: '#2a2214' },
};

/** styleMode picks the stylesheet for a graph of the given size (the same at every zoom). */
export function styleMode(large: boolean): StyleMode {
  return large ? 'large' : 'full';
}

const HEALTHS = ['healthy', 'degraded', 'failing'] as const;
const FONT = 'Inter, system-ui, sans-serif';

/** Rules every mode shares: dependency cycles, search highlighting and selection. */
const interaction: StylesheetJson = [
  { selector: 'node.cycle', style: { 'outline-width': 2, 'outline-color': '#7c3aed', 'outline-offset': 3, 'outline-style': 'solid' } },
  { selector: 'edge.cycle', style: { 'underlay-color': '#7c3aed', 'underlay-opacity': 0.18, 'underlay-padding': 3 } },
  { selector: '.dim', style: { opacity: 0.15 } },
  // A blast radius or a path: the rest fades, the highlighted part stands out in orange.
  { selector: '.faded', style: { opacity: 0.12 } },
  { selector: 'node.hl', style: { 'underlay-color': '#f97316', 'underlay-opacity': 0.3, 'underlay-padding': 7 } },
  { selector: 'node.hl-root', style: { 'underlay-color': '#7c2d12', 'underlay-opacity': 0.35, 'underlay-padding': 9 } },
  { selector: 'edge.hl', style: { 'underlay-color': '#f97316', 'underlay-opacity': 0.45, 'underlay-padding': 4, 'z-index': 9 } },
  { selector: 'node.match', style: { 'border-width': 4, 'underlay-color': '#60a5fa', 'underlay-opacity': 0.35, 'underlay-padding': 6 } },
  { selector: 'node:selected', style: { 'underlay-color': '#2563eb', 'underlay-opacity': 0.25, 'underlay-padding': 8 } },
  { selector: 'edge:selected', style: { 'underlay-color': '#2563eb', 'underlay-opacity': 0.3, 'underlay-padding': 5, 'z-index': 10 } },
];

// Colours and widths come from classes, not data() mappers: a mapper is
// parsed per element, which costs seconds on thousands of elements.
// Health is told by pattern as well as colour, for colour-blind eyes: a
// degraded node has a dashed border, a failing one a thick double border; a
// degraded edge is dotted, a failing one dashed.
const nodeHealth: StylesheetJson = [
  ...(['healthy', 'degraded', 'failing', 'idle'] as const).map((h) => ({ selector: `node.health-${h}`, style: { 'border-color': HEALTH_COLOR[h] } })),
  { selector: 'node.health-degraded', style: { 'border-style': 'dashed', 'border-width': 3 } },
  { selector: 'node.health-failing', style: { 'border-style': 'double', 'border-width': 6 } },
];
const edgePattern: StylesheetJson = [
  { selector: 'edge.health-degraded', style: { 'line-style': 'dotted' } },
  { selector: 'edge.health-failing', style: { 'line-style': 'dashed', 'line-dash-pattern': [8, 3] } },
];

const nodeLabel = (p: (typeof PALETTE)[Theme]) => ({
  label: 'data(label)',
  'font-family': FONT,
  'font-size': 11,
  color: p.label,
  'text-valign': 'bottom',
  'text-halign': 'center',
  'text-margin-y': 4,
  'text-wrap': 'wrap',
  'text-background-color': p.labelBg,
  'text-background-opacity': 0.8,
  'text-background-padding': '1px',
  'min-zoomed-font-size': 7,
}) as const;

const edgeLabel = (p: (typeof PALETTE)[Theme]) => ({
  label: 'data(label)',
  'font-family': FONT,
  'font-size': 9,
  color: p.edgeLabel,
  'text-background-color': p.labelBg,
  'text-background-opacity': 0.9,
  'text-background-padding': '2px',
  'text-background-shape': 'roundrectangle',
  'min-zoomed-font-size': 7,
  'text-rotation': 'none',
}) as const;

function full(p: (typeof PALETTE)[Theme]): StylesheetJson {
  return [
    {
      selector: 'node',
      style: { 'background-color': p.node, 'border-width': 2.5, 'border-color': HEALTH_COLOR.idle, ...nodeLabel(p), width: 30, height: 30, shape: 'ellipse' },
    },
    { selector: 'node.version', style: { shape: 'round-rectangle', width: 34, height: 24 } },
    { selector: 'node.workload', style: { shape: 'round-rectangle', width: 40, height: 24 } },
    { selector: 'node.service', style: { shape: 'round-triangle', width: 34, height: 30 } },
    { selector: 'node.unknown', style: { shape: 'diamond', 'background-color': p.unknown, 'border-style': 'dashed' } },
    ...nodeHealth,
    {
      selector: 'node.group',
      style: {
        shape: 'round-rectangle',
        'background-color': p.box,
        'background-opacity': 1,
        'border-width': 1.5,
        'border-style': 'dashed',
        'border-color': p.boxBorder,
        label: 'data(label)',
        'font-weight': 600,
        'font-size': 12,
        color: p.boxText,
        'text-valign': 'top',
        'text-halign': 'center',
        'text-margin-y': -4,
        'text-background-opacity': 0,
        padding: '12px',
      },
    },
    { selector: 'node.group.health-failing', style: { 'border-color': HEALTH_COLOR.failing, 'background-color': p.failingBox, 'border-style': 'dashed', 'border-width': 2.5 } },
    { selector: 'node.group.health-degraded', style: { 'border-color': HEALTH_COLOR.degraded, 'background-color': p.degradedBox, 'border-style': 'dashed', 'border-width': 1.5 } },
    // A collapsed group is one node standing for its members: a box with its name inside.
    { selector: 'node.group.collapsed', style: { width: 110, height: 32, padding: '6px', 'text-valign': 'center', 'text-margin-y': 0, 'border-style': 'double', 'border-width': 4 } },
    {
      selector: 'edge',
      style: {
        width: 1.5,
        'line-color': HEALTH_COLOR.idle,
        'target-arrow-color': HEALTH_COLOR.idle,
        'target-arrow-shape': 'triangle',
        'arrow-scale': 0.9,
        'curve-style': 'bezier',
        ...edgeLabel(p),
      },
    },
    ...HEALTHS.map((h) => ({ selector: `edge.health-${h}`, style: { 'line-color': HEALTH_COLOR[h], 'target-arrow-color': HEALTH_COLOR[h], 'source-arrow-color': HEALTH_COLOR[h] } })),
    ...[1, 2, 3, 4, 5, 6].map((w) => ({ selector: `edge.w${w}`, style: { width: w } })),
    { selector: 'edge.mtls', style: { 'source-arrow-shape': 'square', 'arrow-scale': 0.8 } },
    ...edgePattern,
    { selector: 'edge.health-failing', style: { color: HEALTH_COLOR.failing } },
    ...interaction,
    { selector: 'node.group:selected', style: { 'underlay-opacity': 0.12 } },
  ];
}

/**
 * large is the cheapest picture cytoscape can draw that still shows what
 * matters from afar (node kinds, health by colour and pattern, traffic
 * widths) and names when zoomed in. Properties equal to cytoscape's
 * defaults are left out (node 30×30 ellipse, haystack edges of radius 0):
 * each one set costs a restyle step per element.
 */
function large(p: (typeof PALETTE)[Theme]): StylesheetJson {
  return [
    {
      selector: 'node',
      style: {
        'background-color': p.node,
        'border-width': 2.5,
        'border-color': HEALTH_COLOR.idle,
        label: 'data(label)',
        'font-size': 11,
        color: p.label,
        'text-valign': 'bottom',
        'text-margin-y': 4,
        'min-zoomed-font-size': 7,
      },
    },
    { selector: 'node.version', style: { shape: 'round-rectangle', width: 34, height: 24 } },
    { selector: 'node.workload', style: { shape: 'round-rectangle', width: 40, height: 24 } },
    { selector: 'node.service', style: { shape: 'triangle', width: 34, height: 30 } },
    { selector: 'node.unknown', style: { shape: 'diamond', 'background-color': p.unknown } },
    ...nodeHealth,
    // Haystack edges (cytoscape's default curve) are straight lines between
    // node centres: no control points, no arrows, no endpoint clipping.
    { selector: 'edge', style: { width: 1.5, 'line-color': HEALTH_COLOR.idle } },
    ...HEALTHS.map((h) => ({ selector: `edge.health-${h}`, style: { 'line-color': HEALTH_COLOR[h] } })),
    ...edgePattern,
    ...[1, 2, 3, 4, 5, 6].map((w) => ({ selector: `edge.w${w}`, style: { width: w } })),
    // Edge numbers, when asked for, from the same zoom as node names.
    { selector: 'edge[label != ""]', style: { label: 'data(label)', 'font-size': 9, color: p.edgeLabel, 'min-zoomed-font-size': 7 } },
    ...interaction,
    // A search does not fade the rest of a large graph (graph.ts, dimOthers): its matches get a halo seen from afar.
    { selector: 'node.match', style: { 'underlay-color': '#2563eb', 'underlay-opacity': 0.45, 'underlay-padding': 40, 'underlay-shape': 'ellipse' } },
  ];
}

/** graphStyle returns the stylesheet of a mode. */
export function graphStyle(mode: StyleMode, theme: Theme = 'light'): StylesheetJson {
  const p = PALETTE[theme];
  return mode === 'large' ? large(p) : full(p);
}
