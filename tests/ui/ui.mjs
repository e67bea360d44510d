// Walks Outpost's web UI in Debian's chromium as a network admin would: sign in, request and
// approve an account, import an inventory from CSV, page, search and filter it, see a refused
// import's row errors, move devices between virtual accounts, open a device, read the transport
// URLs and the license pools. Run by tests/suite/tests/it/ui.rs, which starts Outpost and passes:
//   OUTPOST_UI_URL          https://127.0.0.1:<admin port>
//   OUTPOST_UI_PASSWORD     the first admin's password
//   OUTPOST_UI_ACCOUNT      an active account with LVAs 1 and 2, synchronised once
//   OUTPOST_UI_BRANCH       an active account whose HA stack OUTPOST_UI_DEVICE uses HSECK9 and
//                           holds three authorization codes, issued but not installed, and
//                           which pulls router OUTPOST_UI_PULLED over NETCONF
//   OUTPOST_UI_HOST_KEY     that router's SSH host key fingerprint
//   OUTPOST_UI_SCREENSHOTS  where to write screenshots
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.OUTPOST_UI_URL;
const password = process.env.OUTPOST_UI_PASSWORD;
const accountName = process.env.OUTPOST_UI_ACCOUNT;
const shots = process.env.OUTPOST_UI_SCREENSHOTS;
const branch = process.env.OUTPOST_UI_BRANCH;
const stackSerial = process.env.OUTPOST_UI_DEVICE;
const pulledSerial = process.env.OUTPOST_UI_PULLED;
const hostKey = process.env.OUTPOST_UI_HOST_KEY;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
// The test app's certificate comes from its own throwaway CA.
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
const page = await context.newPage();
const dialogs = [];
// Prompts (the deactivation reason) are answered; an alert could only come from injected script.
page.on('dialog', async (dialog) => {
  if (dialog.type() !== 'prompt') dialogs.push(dialog.message());
  await dialog.accept('retired');
});
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
const step = (what) => console.log(`ui: ${what}`);
const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const text = (selector) => page.locator(selector).innerText();

try {
  step('a wrong password is refused with the reason');
  await page.goto(`${base}/ui/`);
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'not the password');
  await page.click('#login button[type=submit]');
  await page.locator('#login .error').waitFor();
  assert.match(await text('#login .error'), /wrong username or password/);

  step('sign in and see the accounts');
  await page.fill('input[name=password]', password);
  await page.click('#login button[type=submit]');
  await page.locator('#accounts').waitFor();
  assert.match(await text('#accounts'), new RegExp(accountName));

  step('request an account and approve it');
  await page.fill('#request-account input[name=name]', 'UI Labs');
  await page.fill('#request-account input[name=smart_account]', 'Acme Corp');
  await page.fill('#request-account input[name=virtual_account]', 'DC');
  await page.click('#request-account button[type=submit]');
  const labsRow = page.locator('#accounts tr', { hasText: 'UI Labs' });
  await labsRow.locator('.status.requested').waitFor();
  await labsRow.getByRole('button', { name: 'Approve' }).click();
    await labsRow.locator('.status.approved').waitFor();
  await shot('accounts');

  step('register it with CSSM (the worker does it) and deactivate it with a reason');
  await labsRow.getByRole('button', { name: 'Register with CSSM' }).click();
  await labsRow.locator('.status.active').waitFor({ timeout: 30000 });
  await labsRow.getByRole('button', { name: 'Deactivate' }).click();
  await labsRow.locator('.status.inactive').waitFor();
  assert.match(await labsRow.innerText(), /\(retired\)/);

  step('an empty inventory says so');
  await page.click(`#accounts a:text-is("${accountName}")`);
  await page.locator('#summary').waitFor();
  assert.equal(await text('#summary'), 'No product instance matches.');

  step('import 120 product instances from CSV');
  let csv = 'udi_pid,udi_serial_number,hostname,host,connect_method,username,password,lva\n';
  for (let i = 0; i < 100; i++) csv += `C9300-24UX,FCW${String(i).padStart(5, '0')},sw-${String(i).padStart(3, '0')}.campus,,push,,,1\n`;
  for (let i = 0; i < 19; i++) csv += `ISR4451,FGL${String(i).padStart(5, '0')},rtr-${String(i).padStart(2, '0')},10.0.0.${i},netconf,netops,Secr3t,2\n`;
  csv += 'C9300-24UX,FCWXSS0001,<img src=x onerror=alert(1)>,,push,,,1\n';
  await page.setInputFiles('#import-file', { name: 'inventory.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await page.locator('#summary', { hasText: '1–50 of 120' }).waitFor();
  assert.equal(await page.locator('#inventory tbody tr').count(), 50);

  step('page through it');
  await page.getByRole('button', { name: 'Next ›' }).click();
  await page.locator('#summary', { hasText: '51–100 of 120' }).waitFor();
  await page.getByRole('button', { name: 'Next ›' }).click();
  await page.locator('#summary', { hasText: '101–120 of 120' }).waitFor();
  assert.ok(await page.getByRole('button', { name: 'Next ›' }).isDisabled());
  await page.getByRole('button', { name: '‹ Previous' }).click();
  await page.locator('#summary', { hasText: '51–100 of 120' }).waitFor();

  step('a hostname with markup is shown as text, never run');
  await page.fill('#filters input[name=q]', 'FCWXSS');
  await page.click('#filters button[type=submit]');
  await page.locator('#summary', { hasText: '1–1 of 1' }).waitFor();
  assert.equal(await page.locator('#inventory tbody td', { hasText: '<img src=x onerror=alert(1)>' }).count(), 1);
  assert.equal(await page.locator('#inventory img').count(), 0);

  step('search and filter: the routers of virtual account 2');
  await page.fill('#filters input[name=q]', 'rtr-1');
  await page.selectOption('#filters select[name=lva]', '2');
  await page.click('#filters button[type=submit]');
  await page.locator('#summary', { hasText: '1–9 of 9' }).waitFor();
  assert.match(await text('#inventory tbody'), /rtr-10/);
  await shot('inventory-filtered');

  step('move two of them to virtual account 1');
  await page.locator('#inventory .pick').nth(0).check();
  await page.locator('#inventory .pick').nth(1).check();
  await page.selectOption('select[name=to_lva]', '1');
  await page.click('#move');
  await page.locator('#summary', { hasText: '1–7 of 7' }).waitFor();

  step('a CSV with bad rows imports nothing and lists each row');
  const bad = 'udi_pid,udi_serial_number,connect_method,lva\nC9300-24UX,NEW1,push,1\nC9300-24UX,NEW2,telnet,1\nC9300-24UX,NEW3,push,9\n';
  await page.setInputFiles('#import-file', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from(bad) });
  await page.locator('#import-errors').waitFor();
  const errors = await text('#import-errors');
  assert.match(errors, /Nothing was imported: 2 row\(s\) need fixing/);
  assert.match(errors, /3\s+connect_method 'telnet' is not push/);
  assert.match(errors, /4\s+local virtual account 9 does not exist/);
  await shot('import-errors');

  step('open a device');
  await page.fill('#filters input[name=q]', '');
  await page.selectOption('#filters select[name=lva]', '');
  await page.click('#filters button[type=submit]');
  await page.locator('#summary', { hasText: 'of 120' }).waitFor();
  await page.locator('#inventory tbody a').first().click();
  await page.locator('#pi-facts').waitFor();
  assert.match(await text('#pi-facts'), /C9300-24UX \/ FCW00000/);
  assert.match(await text('#pi-facts'), /Credentials stored\s+no/);
  await shot('product-instance');

  step('the virtual accounts show their transport URL and device lines');
  await page.goBack();
  await page.click('.tabs a:text-is("Virtual accounts")');
  await page.locator('.lva[data-number="2"] .transport-url').waitFor();
  const url = await text('.lva[data-number="2"] .transport-url');
  assert.match(url, new RegExp(`/cslu/v1/pi/${encodeURIComponent(accountName)}-2$`));
  assert.match(await text('.lva[data-number="2"] pre'), /license smart transport cslu\nlicense smart url cslu https:/);
  await shot('virtual-accounts');

  step('licenses show purchased, in use and shortfall; a transfer moves quantity');
  await page.click('.tabs a:text-is("Licenses")');
  await page.locator('#licenses').waitFor();
  assert.match(await text('#licenses'), /Catalyst 9300 Network Advantage/);
  await page.fill('#license-transfer input[name=from_lva]', '1');
  await page.fill('#license-transfer input[name=to_lva]', '2');
  await page.fill('#license-transfer input[name=quantity]', '100000');
  await page.click('#license-transfer button[type=submit]');
  await page.locator('[role=alert]', { hasText: 'fewer than 100000' }).waitFor();
  await page.fill('#license-transfer input[name=quantity]', '4');
  await page.click('#license-transfer button[type=submit]');
  await page.locator('#toast', { hasText: 'Transferred 4.' }).waitFor();
  await page.locator('#licenses tbody tr', { hasText: 'Catalyst 9300 Network Advantage' }).nth(1).waitFor();
  await shot('licenses');

  step('the events tab shows what was done');
  await page.click('.tabs a:text-is("Events")');
  await page.locator('#events').waitFor();
  const events = await text('#events');
  for (const action of ['product_instance.import', 'product_instance.transfer', 'license.transfer']) {
    assert.ok(events.includes(action), `${action} missing from the events tab`);
  }

  step('the branch: alerts, reporting interval and a webhook');
  await page.click('header a:text-is("Local accounts")');
  await page.click(`#accounts a:text-is("${branch}")`);
  await page.click('.tabs a:text-is("Alerts & webhooks")');
  await page.locator('#account-alerts').waitFor();
  assert.match(await text('#account-alerts'), /Router US Export Lic\. for DNA in use without an installed authorization code \(SLAC\)/);
  await page.fill('#reporting-interval input[name=days]', '30');
  await page.click('#reporting-interval button[type=submit]');
  await page.locator('#toast', { hasText: 'Reporting every 30 days at most.' }).waitFor();
  await page.fill('#create-webhook input[name=url]', 'http://hooks.example.com/outpost');
  await page.click('#create-webhook button[type=submit]');
  await page.locator('[role=alert]', { hasText: 'url must start with https://' }).waitFor();
  await page.fill('#create-webhook input[name=url]', 'https://hooks.example.com/outpost');
  await page.fill('#create-webhook input[name=kinds]', 'reporting_overdue');
  await page.click('#create-webhook button[type=submit]');
  await page.locator('#webhook-secret code').waitFor();
  assert.equal((await text('#webhook-secret code')).length, 32, 'the signing secret is shown once');
  assert.match(await text('#webhooks'), /https:\/\/hooks\.example\.com\/outpost\s+reporting_overdue/);
  await page.locator('#webhooks button:text-is("Delivery log")').click();
  await page.locator('#webhook-log', { hasText: 'Nothing sent yet.' }).waitFor();
  await shot('alerts-and-webhooks');

  step('synchronise with Cisco and with the devices, and set the pull schedule');
  await page.click('.tabs a:text-is("Synchronisation")');
  await page.click('#sync-now');
  await page.waitForFunction(() => {
    const t = document.getElementById('cssm-sync-status').textContent;
    return t && !t.startsWith('Starts') && !t.startsWith('Running') && !t.startsWith('synchronis');
  }, null, { timeout: 30000 });
  assert.doesNotMatch(await text('#cssm-sync-status'), /^Failed/);
  await page.check('#pull-now');
  await page.click('#pull-devices');
  await page.locator('#device-pull-status', { hasText: 'devices pulled' }).waitFor({ timeout: 30000 });
  assert.match(await text('#device-pull-status'), /^1 of 1 devices pulled \(1 new reports/);
  await page.check('#schedule-device-pull input[name=enabled]');
  await page.fill('#schedule-device-pull input[name=hour]', '3');
  await page.fill('#schedule-device-pull input[name=time_zone]', 'Europe/Paris');
  await page.click('#schedule-device-pull button[type=submit]');
  await page.locator('#toast', { hasText: 'Next run' }).waitFor();
  await page.locator('#schedule-device-pull', { hasText: 'next run' }).waitFor();
  await page.fill('#schedule-cssm-sync input[name=time_zone]', 'Mars/Olympus');
  await page.click('#schedule-cssm-sync button[type=submit]');
  await page.locator('[role=alert]', { hasText: 'Mars/Olympus' }).waitFor();
  await page.locator('#sync-runs').waitFor();
  await shot('synchronisation');

  step('the licenses show what authorization codes hold');
  await page.click('.tabs a:text-is("Licenses")');
  const hsec = page.locator('#licenses tbody tr', { hasText: 'Router US Export Lic. for DNA' });
  await hsec.waitFor();
  const cells = await hsec.locator('td').allInnerTexts();
  assert.deepEqual(cells.slice(6), ['3', '7'], `authorized and free: ${cells}`);

  step('the stack shows its deadlines, HA set and authorization codes');
  await page.click('.tabs a:text-is("Inventory")');
  await page.fill('#filters input[name=q]', stackSerial);
  await page.click('#filters button[type=submit]');
  await page.locator('#summary', { hasText: '1–1 of 1' }).waitFor();
  await page.locator('#inventory tbody a').first().click();
  await page.locator('#pi-deadlines').waitFor();
  assert.match(await text('#pi-deadlines'), /Account reporting interval\s+every 30 days/);
  assert.match(await text('#pi-deadlines'), /Next report due\s+.+\(ongoing reporting\)/);
  assert.equal(await text('#pi-ha-role'), 'Reports for its set.');
  assert.equal(await page.locator('#pi-ha-members li').count(), 3);
  const codes = await text('#pi-authorizations');
  assert.equal((codes.match(/\bissued\b/g) || []).length, 3, codes);
  await shot('stack');

  step('the router pulled over NETCONF shows how it is reached and the host key pinned');
  await page.goBack();
  await page.fill('#filters input[name=q]', pulledSerial);
  await page.click('#filters button[type=submit]');
  await page.locator('#summary', { hasText: '1–1 of 1' }).waitFor();
  await page.locator('#inventory tbody a').first().click();
  await page.locator('#pi-facts').waitFor();
  const facts = await text('#pi-facts');
  assert.match(facts, /Connect method\s+netconf/);
  assert.match(facts, /Pulled over\s+SSH/);
  assert.ok(facts.includes(`host key ${hostKey} (since`), facts);
  assert.doesNotMatch(facts, /Last pull\s+never/);
  await shot('pulled-router');

  step('a system admin creates an account user, who sees only that account');
  await page.click('header a:text-is("Users")');
  await page.locator('#users').waitFor();
  await page.fill('#create-user input[name=username]', 'campus-viewer');
  await page.fill('#create-user input[name=password]', 'short');
  await page.selectOption('#create-user select[name=account_id]', { label: accountName });
  await page.selectOption('#create-user select[name=account_role]', 'account_user');
  await page.click('#create-user button[type=submit]');
  await page.locator('[role=alert]', { hasText: 'at least 12 characters' }).waitFor();
  await page.fill('#create-user input[name=password]', 'a-long-enough-password');
  await page.click('#create-user button[type=submit]');
  await page.locator('#users tr[data-user="campus-viewer"]').waitFor();
  assert.match(await text('#users tr[data-user="campus-viewer"]'), new RegExp(`${accountName}: account_user`));
  await shot('users');
  await page.click('#sign-out');
  await page.fill('input[name=username]', 'campus-viewer');
  await page.fill('input[name=password]', 'a-long-enough-password');
  await page.click('#login button[type=submit]');
  await page.locator('#accounts').waitFor();
  assert.equal(await page.locator('#accounts tbody tr').count(), 1, 'an account user sees only its account');
  assert.match(await text('#accounts'), new RegExp(accountName));

  assert.deepEqual(dialogs, [], 'no script ran from reported data');
  assert.deepEqual(pageErrors, [], 'no uncaught error in the page');
  step('done');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
