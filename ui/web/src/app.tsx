import { useEffect, useState } from 'preact/hooks';
import { Spinner } from './components/common';
import { getToken, onAuthError, setToken, type ApiError } from './api';
import { lazy } from './lazy';
import { TopologyPage } from './pages/Topology';
import { match, navigate, onLinkClick, useLocation } from './router';
import { onToasts, toast, type Toast } from './toast';
import { useSignedIn } from './session';
import { setTheme, useTheme } from './theme';

const NAV = [
  { href: '/topology', label: 'Topology', icon: '◎' },
  { href: '/services', label: 'Services', icon: '▤' },
  { href: '/rollouts', label: 'Rollouts', icon: '⇢' },
  { href: '/config', label: 'Config', icon: '⚙' },
  { href: '/alerts', label: 'Alerts', icon: '⚑' },
];

// The topology is the landing page; the others load when first visited.
const pageFallback = () => (
  <div class="page">
    <Spinner />
  </div>
);
const ServicesPage = lazy(() => import('./pages/Services').then((m) => m.ServicesPage), pageFallback);
const ServiceDetailPage = lazy(() => import('./pages/Services').then((m) => m.ServiceDetailPage), pageFallback);
const RolloutsPage = lazy(() => import('./pages/Rollouts').then((m) => m.RolloutsPage), pageFallback);
const RolloutDetailPage = lazy(() => import('./pages/Rollouts').then((m) => m.RolloutDetailPage), pageFallback);
const ConfigPage = lazy(() => import('./pages/Config').then((m) => m.ConfigPage), pageFallback);
const AlertsPage = lazy(() => import('./pages/Alerts').then((m) => m.AlertsPage), pageFallback);

function route(path: string, query: URLSearchParams) {
  let m;
  // The root is the topology (its URL becomes /topology in an effect of App:
  // navigating here, during render, would leave the page blank).
  if (path === '/' || path === '' || match('/topology', path)) return <TopologyPage query={query} />;
  if (match('/services', path)) return <ServicesPage />;
  if ((m = match('/services/:ns/:name', path))) return <ServiceDetailPage ns={m.ns} name={m.name} query={query} />;
  if (match('/rollouts', path)) return <RolloutsPage query={query} />;
  if ((m = match('/rollouts/:ns/:name', path))) return <RolloutDetailPage ns={m.ns} name={m.name} />;
  if (match('/config', path)) return <ConfigPage query={query} />;
  if (match('/alerts', path)) return <AlertsPage />;
  return (
    <div class="page">
      <div class="empty">
        <div class="empty-title">No page at {path}</div>
        <div class="empty-body">
          Go to the <a href="/topology">topology</a>.
        </div>
      </div>
    </div>
  );
}

export function App() {
  const { path, query } = useLocation();
  const [login, setLogin] = useState<{ reason: string } | null>(null);
  const hasToken = useSignedIn();
  const theme = useTheme();
  const [toasts, setToasts] = useState<Toast[]>([]);
  useEffect(() => onToasts(setToasts), []);
  useEffect(
    () =>
      onAuthError((e: ApiError) =>
        setLogin((cur) => cur ?? { reason: e.status === 403 ? `This action needs more rights: ${e.message}. Sign in with an operator token.` : `meshlens asks for a token: ${e.message}` }),
      ),
    [],
  );
  useEffect(() => {
    if (path === '/' || path === '') navigate('/topology' + location.search, true);
  }, [path]);
  const section = path === '/' || path === '' ? '/topology' : '/' + (path.split('/')[1] ?? '');
  return (
    <div class="shell" onClick={onLinkClick}>
      <nav class="sidebar">
        <a class="brand" href="/topology">
          <svg viewBox="0 0 32 32" width="26" height="26" aria-hidden="true">
            <rect width="32" height="32" rx="7" fill="#1e3a5f" />
            <circle cx="9" cy="16" r="4" fill="#5eead4" />
            <circle cx="23" cy="9" r="4" fill="#93c5fd" />
            <circle cx="23" cy="23" r="4" fill="#93c5fd" />
            <path d="M12.5 14.5 19.5 10.5M12.5 17.5 19.5 21.5" stroke="#e2e8f0" stroke-width="2" />
          </svg>
          meshlens
        </a>
        <ul>
          {NAV.map((n) => (
            <li>
              <a href={n.href} class={section === n.href ? 'active' : ''} aria-current={section === n.href ? 'page' : undefined}>
                <span class="nav-icon" aria-hidden="true">{n.icon}</span>
                {n.label}
              </a>
            </li>
          ))}
        </ul>
        <div class="sidebar-foot">
          {hasToken ? (
            <button
              class="btn small ghost"
              onClick={() => setToken('')}
            >
              Sign out
            </button>
          ) : (
            <button class="btn small" onClick={() => setLogin({ reason: '' })} data-testid="sign-in">
              Sign in
            </button>
          )}
          <div class="muted tiny">{hasToken ? 'token set' : 'read-only until signed in'}</div>
          <button
            class="btn small ghost theme-toggle"
            onClick={() => setTheme(theme === 'dark' ? 'light' : 'dark')}
            aria-label={theme === 'dark' ? 'Switch to the light theme' : 'Switch to the dark theme'}
            data-testid="theme"
          >
            {theme === 'dark' ? '☀ Light theme' : '☾ Dark theme'}
          </button>
        </div>
      </nav>
      <main class="content">{route(path, query)}</main>
      {login && (
        <LoginDialog
          reason={login.reason}
          onDone={(ok) => {
            setLogin(null);
            // No reload: what the user typed (YAML, a form) stays; pages refresh by themselves.
            if (ok) toast('Signed in. Repeat the action that asked for the token.', 'ok');
          }}
        />
      )}
      <div class="toasts" aria-live="polite">
        {toasts.map((t) => (
          <div class={`toast ${t.kind}`}>{t.text}</div>
        ))}
      </div>
    </div>
  );
}

function LoginDialog({ reason, onDone }: { reason: string; onDone: (ok: boolean) => void }) {
  const [value, setValue] = useState(getToken());
  return (
    <div class="modal-backdrop">
      <form
        class="modal"
        role="dialog"
        aria-label="Sign in"
        data-testid="login"
        onSubmit={(e) => {
          e.preventDefault();
          setToken(value.trim());
          onDone(true);
        }}
      >
        <h2>Sign in to meshlens</h2>
        {reason && <p class="banner warn">{reason}</p>}
        <p class="muted">
          Paste a bearer token. A viewer token can read; an operator token can also apply config and steer rollouts. The token stays in this browser (local storage).
        </p>
        <label class="field">
          <span>Token</span>
          <input type="password" autoFocus value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} name="token" autoComplete="off" />
        </label>
        <div class="form-actions">
          <span class="spacer" />
          <button type="button" class="btn" onClick={() => onDone(false)}>
            Cancel
          </button>
          <button type="submit" class="btn primary" disabled={!value.trim()}>
            Sign in
          </button>
        </div>
      </form>
    </div>
  );
}
