// Who is looking: signed in (a token in this browser) or not. Buttons that
// change config or steer rollouts need an operator token; a signed-out viewer
// sees them disabled, with the reason, instead of a 401 after a click.
import { useEffect, useState } from 'preact/hooks';
import { getToken, onTokenChange } from './api';

export const OPERATOR_HINT = 'Sign in with an operator token to do this (Sign in, bottom left).';

export function useSignedIn(): boolean {
  const [signedIn, set] = useState(() => !!getToken());
  useEffect(() => onTokenChange(() => set(!!getToken())), []);
  return signedIn;
}
