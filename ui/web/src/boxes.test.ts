import cytoscape from 'cytoscape';
import { describe, expect, it } from 'vitest';
import { boxesOf, boxLabelShown, boxRect, boxStyle, hitBox, placeOfCy } from './components/boxes';
import { toSVG } from './exporting';
import { PALETTE } from './graphstyle';
import { HEALTH_COLOR } from './format';
import type { GroupBox } from './graph';

// A large graph's boxes are painted from their members' positions, on screen
// and in the exports alike (components/boxes.ts).
const box: GroupBox = { id: 'group:shop/cart', label: 'cart', health: 'failing', members: ['shop/cart/v1', 'shop/cart/v2', 'gone'] };
const cy = cytoscape({
  headless: true,
  layout: { name: 'preset' },
  elements: [
    { group: 'nodes', data: { id: 'shop/cart/v1' }, position: { x: 100, y: 50 } },
    { group: 'nodes', data: { id: 'shop/cart/v2' }, position: { x: 100, y: 110 } },
  ],
});

describe('the boxes of a large graph', () => {
  it('are around their members, with room for their labels', () => {
    expect(boxRect(placeOfCy(cy), box)).toEqual({ x1: 64, y1: 22, x2: 136, y2: 150 });
    expect(boxRect(placeOfCy(cy), { ...box, members: ['gone'] })).toBeNull();
    expect(hitBox(placeOfCy(cy), [box], { x: 70, y: 140 })).toBe(box.id);
    expect(hitBox(placeOfCy(cy), [box], { x: 140, y: 140 })).toBeNull();
  });

  it('are painted by health or as selected, in the theme\'s colours', () => {
    expect(boxStyle(box, undefined, false)).toEqual({ fill: PALETTE.light.failingBox, stroke: HEALTH_COLOR.failing, text: PALETTE.light.boxText });
    expect(boxStyle({ ...box, health: 'healthy' }, undefined, true)).toEqual({ fill: PALETTE.dark.box, stroke: PALETTE.dark.boxBorder, text: PALETTE.dark.boxText });
    expect(boxStyle(box, box.id, false).stroke).toBe('#2563eb');
    expect(boxLabelShown(0.6)).toBe(true);
    expect(boxLabelShown(0.5)).toBe(false);
  });

  it('are what GraphCanvas published for the exports', () => {
    expect(boxesOf(cy)).toEqual({ boxes: [], selected: undefined });
    cy.scratch('_boxes', [box]);
    cy.scratch('_selectedBox', box.id);
    expect(boxesOf(cy)).toEqual({ boxes: [box], selected: box.id });
  });

  it('are drawn in the SVG without a name when zoomed out too far to read it', () => {
    const svg = toSVG({ width: 100, height: 100, background: '#fff', boxes: [{ x: 1, y: 2, w: 30, h: 40, label: '', stroke: '#000', fill: '#eee' }], edges: [], nodes: [], text: 't' });
    expect(svg).toContain('<rect x="1" y="2" width="30" height="40" rx="6" fill="#eee" stroke="#000" stroke-dasharray="5 4"/>');
    expect(svg).not.toContain('font-weight="600"');
  });
});
