/** Account: the browser keystore (create / import / unlock), the API key, balance, transfers. */
import { useState } from 'preact/hooks';
import { Amount, ErrorBox, Hash, Page, Section, useAsync } from '../components/ui';
import { sendTransfer } from '../lib/chain';
import { parseAitbc } from '../lib/format';
import { decryptKey, encryptKey, loadStoredKey, parseImportedKey, saveStoredKey } from '../lib/keystore';
import { generateKey, type KeyPair } from '../lib/signer';
import { isValidAddress } from '../lib/address';
import { settings, unlockedKey, useApi, useStore } from '../state';

function KeySetup({ onDone }: { onDone: () => void }) {
  const [pending, setPending] = useState<KeyPair | null>(null);
  const [importText, setImportText] = useState('');
  const [passphrase, setPassphrase] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const doImport = () => {
    try {
      setPending(parseImportedKey(importText));
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const readFile = async (file: File | undefined) => {
    if (!file) return;
    setImportText(await file.text()); // read locally; never uploaded
  };
  const save = async (e: Event) => {
    e.preventDefault();
    if (!pending) return;
    setBusy(true);
    try {
      saveStoredKey(await encryptKey(pending, passphrase));
      unlockedKey.set(pending);
      setImportText('');
      setPassphrase('');
      onDone();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  if (pending) {
    return (
      <form onSubmit={save} class="form">
        <p>
          Key <Hash value={pending.address} full /> — choose a passphrase to encrypt it in this browser (PBKDF2 + AES-GCM).
        </p>
        <label>
          Passphrase (at least 8 characters)
          <input type="password" autoComplete="new-password" value={passphrase} minLength={8} required onInput={(e) => setPassphrase((e.target as HTMLInputElement).value)} />
        </label>
        <div class="row">
          <button type="submit" disabled={busy}>
            {busy ? 'Encrypting…' : 'Save key in this browser'}
          </button>
          <button type="button" class="secondary" onClick={() => setPending(null)}>
            Back
          </button>
        </div>
        <ErrorBox error={error} />
      </form>
    );
  }
  return (
    <div class="form">
      <p>No key in this browser yet. The key signs your payments here; it never leaves the browser.</p>
      <button type="button" onClick={() => setPending(generateKey())}>
        Create a new key
      </button>
      <label>
        Or import a seed (64 hex digits) or an <code>aitbc keys</code> key file (the devnet's client key:{' '}
        <code>~/.aitbc/devnet/keys/client.key</code>)
        <textarea rows={3} value={importText} spellcheck={false} onInput={(e) => setImportText((e.target as HTMLTextAreaElement).value)} />
      </label>
      <label>
        Key file
        <input type="file" accept=".key,.json,application/json" onChange={(e) => void readFile((e.target as HTMLInputElement).files?.[0])} />
      </label>
      <button type="button" class="secondary" onClick={doImport} disabled={!importText.trim()}>
        Import key
      </button>
      <ErrorBox error={error} />
    </div>
  );
}

function Unlock() {
  const stored = loadStoredKey()!;
  const [passphrase, setPassphrase] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      unlockedKey.set(await decryptKey(stored, passphrase));
      setPassphrase('');
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} class="form">
      <p>
        Key <Hash value={stored.address} full /> is stored encrypted in this browser.
      </p>
      <label>
        Passphrase
        <input type="password" autoComplete="current-password" value={passphrase} required onInput={(e) => setPassphrase((e.target as HTMLInputElement).value)} />
      </label>
      <div class="row">
        <button type="submit" disabled={busy}>
          {busy ? 'Unlocking…' : 'Unlock'}
        </button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

function Balance({ address }: { address: string }) {
  const api = useApi();
  const account = useAsync(() => api.account(address), [api, address], 3000);
  return (
    <dl class="facts">
      <dt>Address</dt>
      <dd>
        <Hash value={address} full href={`#/explorer/account/${address}`} />
      </dd>
      <dt>Balance</dt>
      <dd data-testid="balance">{account.data ? <Amount value={account.data.balance} /> : '…'}</dd>
      <dt>Nonce</dt>
      <dd>{account.data?.nonce ?? '…'}</dd>
      <ErrorBox error={account.error} />
    </dl>
  );
}

function TransferForm({ keyPair }: { keyPair: KeyPair }) {
  const api = useApi();
  const [to, setTo] = useState('');
  const [amount, setAmount] = useState('');
  const [memo, setMemo] = useState('');
  const [result, setResult] = useState<string>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setResult(undefined);
    if (!isValidAddress(to)) return setError('the recipient is not a valid ait1… address');
    setBusy(true);
    try {
      const { hash, status } = await sendTransfer(api, keyPair, to, Number(parseAitbc(amount)), memo);
      setResult(`tx ${hash.slice(0, 16)}… ${status.status}${status.height ? ` in block ${status.height}` : ''}`);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} class="form">
      <label>
        Recipient
        <input value={to} required placeholder="ait1…" spellcheck={false} onInput={(e) => setTo((e.target as HTMLInputElement).value.trim())} />
      </label>
      <label>
        Amount (AITBC)
        <input value={amount} required inputMode="decimal" placeholder="1.5" onInput={(e) => setAmount((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Memo
        <input value={memo} maxLength={256} onInput={(e) => setMemo((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? 'Signing and sending…' : 'Sign in the browser and send'}
      </button>
      {result && <p role="status">{result}</p>}
      <ErrorBox error={error} />
    </form>
  );
}

export function AccountPage() {
  const s = useStore(settings);
  const key = useStore(unlockedKey);
  const [, setVersion] = useState(0);
  const stored = loadStoredKey();
  return (
    <Page title="Account" intro="Your API key for the coordinator and your signing key. Keys are created, encrypted and used only in this browser.">
      <Section title="API key">
        <form class="form" onSubmit={(e) => e.preventDefault()}>
          <label>
            Coordinator API key (<code>aitbc coordinator keys create</code>; the devnet prints one)
            <input
              type="password"
              autoComplete="off"
              value={s.apiKey}
              data-testid="api-key"
              onInput={(e) => settings.set({ ...s, apiKey: (e.target as HTMLInputElement).value.trim() })}
            />
          </label>
          <p class="muted">Kept in this browser's storage and sent only to the coordinator, as X-Api-Key.</p>
        </form>
      </Section>
      <Section
        title="Signing key"
        actions={
          key ? (
            <button type="button" class="secondary" onClick={() => unlockedKey.set(null)}>
              Lock
            </button>
          ) : stored ? (
            <button
              type="button"
              class="secondary danger"
              onClick={() => {
                if (confirm('Forget the stored key? Funds stay on chain, but only a backup of the seed can spend them.')) {
                  saveStoredKey(null);
                  setVersion((v) => v + 1);
                }
              }}
            >
              Forget key
            </button>
          ) : null
        }
      >
        {key ? <Balance address={key.address} /> : stored ? <Unlock /> : <KeySetup onDone={() => setVersion((v) => v + 1)} />}
      </Section>
      {key && (
        <Section title="Send AITBC">
          <TransferForm keyPair={key} />
        </Section>
      )}
    </Page>
  );
}
