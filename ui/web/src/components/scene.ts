// sceneFromCy reads what the canvas shows, in screen coordinates, for the SVG export.
import type { Core } from 'cytoscape';
import type { Scene } from '../exporting';
import { boxesOf, boxLabelShown, boxRect, boxStyle, placeOfCy } from './boxes';

const DASH: Record<string, string> = { dashed: '6 3', dotted: '2 2' };

export function sceneFromCy(cy: Core, background: string, text: string): Scene {
  const zoom = cy.zoom();
  const px = (v: string | number) => (typeof v === 'number' ? v : parseFloat(v) || 0);
  const scene: Scene = { width: cy.width(), height: cy.height(), background, boxes: [], edges: [], nodes: [], text };
  // A large graph's boxes are not cytoscape's: they are painted from their members (boxes.ts).
  const { boxes, selected } = boxesOf(cy);
  const pan = cy.pan();
  const place = placeOfCy(cy);
  for (const b of boxes) {
    const r = boxRect(place, b);
    if (!r) continue;
    const st = boxStyle(b, selected, cy.scratch('_theme') === 'dark');
    const x = r.x1 * zoom + pan.x;
    const y = r.y1 * zoom + pan.y;
    const w = (r.x2 - r.x1) * zoom;
    const h = (r.y2 - r.y1) * zoom;
    if (x + w < 0 || y + h < 0 || x > scene.width || y > scene.height) continue;
    scene.boxes.push({ x, y, w, h, label: boxLabelShown(zoom) ? b.label : '', stroke: st.stroke, fill: st.fill });
  }
  cy.nodes(':visible').forEach((n) => {
    if (n.isParent()) {
      const b = n.renderedBoundingBox({ includeLabels: false });
      scene.boxes.push({ x: b.x1, y: b.y1, w: b.w, h: b.h, label: String(n.data('label') ?? ''), stroke: n.style('border-color'), fill: n.style('background-color') });
      return;
    }
    const p = n.renderedPosition();
    const shape = String(n.style('shape'));
    scene.nodes.push({
      x: p.x, y: p.y, w: n.renderedWidth(), h: n.renderedHeight(),
      shape: shape.includes('ellipse') ? 'ellipse' : shape.includes('diamond') ? 'diamond' : shape.includes('triangle') ? 'triangle' : 'rect',
      stroke: n.style('border-color'), strokeWidth: px(n.style('border-width')) * zoom, dash: DASH[String(n.style('border-style'))] ?? '',
      fill: n.style('background-color'), label: String(n.data('label') ?? ''), opacity: Math.round(n.effectiveOpacity() * 100) / 100,
    });
  });
  cy.edges(':visible').forEach((e) => {
    const s = e.renderedSourceEndpoint();
    const t = e.renderedTargetEndpoint();
    const m = e.renderedMidpoint();
    scene.edges.push({
      x1: s.x, y1: s.y, x2: t.x, y2: t.y,
      // The quadratic curve through the midpoint: straight edges stay straight.
      cx: 2 * m.x - (s.x + t.x) / 2, cy: 2 * m.y - (s.y + t.y) / 2,
      color: e.style('line-color'), width: Math.max(0.5, px(e.style('width')) * zoom), dash: DASH[String(e.style('line-style'))] ?? '',
      label: e.style('label') ? String(e.data('label') ?? '') : '', opacity: Math.round(e.effectiveOpacity() * 100) / 100,
    });
  });
  return scene;
}
