import React, { useState } from 'react';

/**
 * Renders a controlled editor as Grafana does: its changes flow back in as
 * props, and every change is also handed to spy.
 */
export function Stateful<T>(props: { initial: T; spy: (v: T) => void; render: (value: T, onChange: (v: T) => void) => React.ReactElement }) {
  const [value, setValue] = useState(props.initial);
  return props.render(value, (v) => {
    setValue(v);
    props.spy(v);
  });
}
