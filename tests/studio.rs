//! `headstart studio` in a real headless Chromium: the loop from an empty folder to a bundle `headstart predict`
//! takes, driven through the page as a person would, and the token and address checks from a plain HTTP client.

mod browser;
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use browser::{Browser, screenshot_dir};
use common::running::Running;
use common::{elpv_class, headstart_ok};
use serde_json::Value;

/// The browser tests take turns: the timings they print are of a studio with the machine to itself.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

struct Studio {
    running: Running,
    /// The address it printed, token included.
    url: String,
    /// http://host:port
    base: String,
    token: String,
}

impl Studio {
    fn start(dataset: &Path) -> Studio {
        Studio::start_with(&["studio", dataset.to_str().unwrap()])
    }

    /// `headstart ARGS`, a studio.
    fn start_with(args: &[&str]) -> Studio {
        let running = Running::start(args);
        let line = &running.first_line;
        assert!(
            line.starts_with("headstart studio on http://127.0.0.1:"),
            "{line}"
        );
        let url = line.rsplit(' ').next().unwrap().to_string();
        let (base, token) = url.split_once("/?token=").unwrap();
        Studio {
            base: base.to_string(),
            token: token.to_string(),
            url,
            running,
        }
    }

    fn stop(self) -> std::process::ExitStatus {
        self.running.stop()
    }
}

/// GET `path` with these headers; the status.
fn status_of(studio: &Studio, path: &str, headers: &[(&str, &str)]) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(format!("{}{path}", studio.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.call().unwrap().status().as_u16()
}

#[test]
fn only_its_token_on_its_own_address_drives_it() {
    let dir = tempfile::tempdir().unwrap();
    let studio = Studio::start(&dir.path().join("new"));
    let token = studio.token.as_str();
    assert_eq!(status_of(&studio, "/api/data", &[]), 401);
    assert_eq!(status_of(&studio, "/", &[]), 401);
    assert_eq!(status_of(&studio, "/api/progress", &[]), 401);
    assert_eq!(
        status_of(&studio, "/api/data", &[("x-headstart-token", "guess")]),
        401
    );
    assert_eq!(
        status_of(&studio, "/api/data", &[("x-headstart-token", token)]),
        200
    );
    assert_eq!(status_of(&studio, &format!("/?token={token}"), &[]), 200);
    let cookie = format!("headstart_studio={token}");
    assert_eq!(status_of(&studio, "/api/data", &[("cookie", &cookie)]), 200);
    // A page elsewhere, or a name that resolves here (DNS rebinding), is refused even with the token.
    assert_eq!(
        status_of(
            &studio,
            "/api/data",
            &[
                ("x-headstart-token", token),
                ("origin", "http://evil.example")
            ]
        ),
        403
    );
    assert_eq!(
        status_of(
            &studio,
            "/api/data",
            &[("x-headstart-token", token), ("host", "evil.example:80")]
        ),
        403
    );
    // Paths that lead out of the folder are refused.
    assert_eq!(
        status_of(
            &studio,
            "/api/image/..%2F..%2Fetc%2Fpasswd",
            &[("x-headstart-token", token)]
        ),
        400
    );
    // The progress stream tells the state now (idle); one left open does not keep the studio from stopping.
    let mut stream = ureq::get(format!("{}/api/progress", studio.base))
        .header("x-headstart-token", token)
        .call()
        .unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut first = String::new();
    BufReader::new(stream.body_mut().as_reader())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), r#"data: {"stage":"","done":0,"total":0}"#);
    assert!(studio.stop().success());
}

/// Listening on every address, it answers any IP address of this machine with its token, but still no name but
/// localhost (a name is how DNS rebinding would come in).
#[test]
fn on_every_address_it_takes_ip_addresses_and_no_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let studio = Studio::start_with(&["studio", folder.to_str().unwrap(), "--host", "0.0.0.0"]);
    let port = studio.base.rsplit(':').next().unwrap();
    let token = studio.token.as_str();
    for (host, status) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("10.1.2.3:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (
            format!("10.1.2.3:{}", port.parse::<u16>().unwrap().wrapping_add(1)),
            403,
        ),
        (format!("evil.example:{port}"), 403),
    ] {
        assert_eq!(
            status_of(
                &studio,
                "/api/data",
                &[("x-headstart-token", token), ("host", &host)]
            ),
            status,
            "{host}"
        );
    }
    assert_eq!(
        status_of(
            &studio,
            "/api/data",
            &[("host", &format!("10.1.2.3:{port}"))]
        ),
        401
    );
    assert!(studio.stop().success());
}

/// `--open` hands the address it prints, token included, to the desktop's opener (here a stand-in `xdg-open`
/// on the PATH that writes down what it was given: this machine has no desktop).
#[cfg(target_os = "linux")]
#[test]
fn open_hands_its_address_to_the_desktop() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let opened = dir.path().join("opened");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        // Written aside and renamed: the test never reads it half-written.
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{0}.part' && mv '{0}.part' '{0}'\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let running = Running::start_with_env(
        &[
            "studio",
            dir.path().join("data").to_str().unwrap(),
            "--open",
        ],
        &[("PATH", &path)],
    );
    let printed = running.first_line.rsplit(' ').next().unwrap().to_string();
    let started = Instant::now();
    while !opened.is_file() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&opened).unwrap(), printed);
    assert!(running.stop().success());
}

/// What the studio cannot open is a clear error, and nothing is made: a file that is not a table, a table in a
/// folder that does not exist.
#[test]
fn what_it_cannot_open_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sheet = dir.path().join("notes.xlsx");
    std::fs::write(&sheet, b"x").unwrap();
    let nowhere = dir.path().join("nowhere/questions.csv");
    for (path, says) in [
        (&sheet, "is a file: the studio opens a folder"),
        (&nowhere, "No such file or directory"),
    ] {
        let (code, _, stderr) =
            common::headstart(&["studio", path.to_str().unwrap(), "--port", "0"]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    assert!(!dir.path().join("nowhere").exists());
}

/// Trains from the page with the form as it is; the cross-validated accuracy it shows, in percent. The button is
/// disabled from the click until the answer is shown, so an earlier training's accuracy is never read.
fn trained_in_page(browser: &Browser) -> f64 {
    browser.click("nav button[data-tab=train]");
    browser.click("#train");
    let accuracy = browser.wait_for(
        "const a = document.querySelector('#accuracy');
         return !document.querySelector('#train').disabled && a && a.textContent",
        Duration::from_secs(120),
    );
    accuracy
        .as_str()
        .unwrap()
        .trim_end_matches(" %")
        .parse()
        .unwrap()
}

/// Waits (up to 10 s) until something matches `css`, or until nothing does.
fn wait_shown(browser: &Browser, css: &str, shown: bool) {
    let test = if shown { "!==" } else { "===" };
    browser.wait_for(
        &format!("return document.querySelector('{css}') {test} null"),
        Duration::from_secs(10),
    );
}

/// Sets the first `control` (a select or input of an image or row) to `value` as a person would, and returns the
/// path or id of the image or row.
fn change(browser: &Browser, control: &str, value: &str) -> String {
    let item = browser.script(&format!(
        "const c = document.querySelector('{control}'); const item = c.closest('[data-path]').dataset.path;
         c.value = '{value}'; c.dispatchEvent(new Event('change')); return item"
    ));
    item.as_str().unwrap().to_string()
}

/// The bytes behind the page's link `selector`, fetched by the page itself (its cookie carrying the token).
fn downloaded(browser: &Browser, selector: &str) -> Vec<u8> {
    let encoded = browser.script_async(&format!(
        "fetch(document.querySelector('{selector}').href).then(r => r.arrayBuffer()).then(b => {{
           let s = ''; new Uint8Array(b).forEach(c => s += String.fromCharCode(c)); done(btoa(s)); }})"
    ));
    base64::engine::general_purpose::STANDARD
        .decode(encoded.as_str().unwrap())
        .unwrap()
}

fn photos() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for folder in [
        headstart::datasets::camera_photos().unwrap(),
        headstart::datasets::wallpaper_photos().unwrap(),
    ] {
        let mut listed: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        listed.sort();
        found.extend(listed);
    }
    found
}

fn lines(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// From an empty folder: two classes, images uploaded into them (a cell among the photos), trained, a confusion
/// cell opened, an image tried, the misfiled cell found by the audit and moved, trained again, the bundle taken.
#[test]
fn the_loop_from_an_empty_folder_to_a_bundle() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("my-data");
    let studio = Studio::start(&folder);
    let browser = Browser::start();
    let shots = screenshot_dir();
    browser.open(&studio.url);
    browser.wait_for(
        "return document.querySelector('#data-summary').textContent",
        Duration::from_secs(10),
    );
    // The token leaves the address bar; the cookie carries it.
    assert_eq!(browser.script("return location.search"), "");
    assert_eq!(
        browser.script(
            "return ['#image-bar', '#text-bar'].map(s => getComputedStyle(document.querySelector(s)).display)"
        ),
        serde_json::json!(["flex", "none"])
    );

    for class in ["cell", "photo"] {
        browser.send_keys("#new-class", class);
        browser.click("#add-class");
        wait_shown(
            &browser,
            &format!("section.class[data-class={class}]"),
            true,
        );
    }
    let cells: Vec<PathBuf> = elpv_class("functional").into_iter().take(24).collect();
    let photos = photos();
    let photos = &photos[..24];
    let misfiled = &cells[0];
    browser.send_keys("section[data-class=cell] input.upload", &lines(&cells[1..]));
    browser.wait_for(
        "return document.querySelectorAll('section[data-class=cell] figure').length === 23",
        Duration::from_secs(30),
    );
    let mut into_photo = photos.to_vec();
    into_photo.push(misfiled.clone());
    browser.send_keys(
        "section[data-class=photo] input.upload",
        &lines(&into_photo),
    );
    browser.wait_for(
        "return document.querySelectorAll('section[data-class=photo] figure').length === 25",
        Duration::from_secs(30),
    );
    // Thumbnails arrive decoded, every one in view.
    browser.wait_for(
        "return [...document.querySelectorAll('#classes img')]
           .filter(i => i.getBoundingClientRect().top < innerHeight)
           .every(i => i.complete && i.naturalWidth > 0)",
        Duration::from_secs(30),
    );
    browser.screenshot(&shots.join("studio-data.png"));

    // A frame from the camera into a class.
    browser.click("section[data-class=cell] h2 button");
    browser.wait_for(
        "return [...document.querySelectorAll('section[data-class=cell] figure')].some(f => f.dataset.path.startsWith('cell/webcam-'))",
        Duration::from_secs(30),
    );
    let frame = std::fs::read_dir(folder.join("cell"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("webcam-")
        })
        .unwrap();
    assert!(image::open(&frame).is_ok(), "{}", frame.display());
    // It is not a cell: out of the way before training, into the trash, and back, and into the trash again.
    let trashed = format!("cell/{}", frame.file_name().unwrap().to_str().unwrap());
    browser.click(&format!("figure[data-path=\"{trashed}\"] button.trash"));
    wait_shown(&browser, &format!("figure[data-path=\"{trashed}\"]"), false);
    assert!(!frame.exists() && folder.join(".headstart-trash").join(&trashed).is_file());
    browser.click("#message button");
    wait_shown(&browser, &format!("figure[data-path=\"{trashed}\"]"), true);
    assert!(frame.is_file());
    browser.click(&format!("figure[data-path=\"{trashed}\"] button.trash"));
    wait_shown(&browser, &format!("figure[data-path=\"{trashed}\"]"), false);

    let started = Instant::now();
    let accuracy = trained_in_page(&browser);
    eprintln!(
        "first training answered in {:.2} s: {accuracy} %",
        started.elapsed().as_secs_f64()
    );
    assert!(accuracy > 80.0, "{accuracy}");
    // Progress came as a stream while it trained: the embedding, then the cross-validation.
    let stages = browser.script("return document.querySelector('#progress').dataset.stages");
    let stages: Vec<&str> = stages.as_str().unwrap().split('|').collect();
    let at = |stage: &str| stages.iter().position(|s| s.starts_with(stage));
    assert!(
        at("embedding").unwrap() < at("cross-validating over 5 folds, 5 values of C").unwrap(),
        "{stages:?}"
    );
    browser.screenshot(&shots.join("studio-train.png"));

    // The cell of photos answered as photos holds as many images as it says.
    let count: u64 = browser
        .script(
            "return document.querySelector('#confusion td.cell[data-truth=\"1\"][data-predicted=\"1\"]').textContent"
        )
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    browser.click("#confusion td.cell[data-truth=\"1\"][data-predicted=\"1\"]");
    let shown = browser.wait_for(
        "const v = document.querySelector('#cell'); return !v.hidden && v.querySelectorAll('figure').length",
        Duration::from_secs(10),
    );
    assert_eq!(shown.as_u64().unwrap(), count);
    browser.click("#cell-close");

    browser.click("nav button[data-tab=try]");
    let tried = elpv_class("defective")[3].clone();
    browser.send_keys("#try-file", tried.to_str().unwrap());
    let answer = browser.wait_for(
        "const a = document.querySelector('#answer'); return a && a.textContent",
        Duration::from_secs(30),
    );
    assert_eq!(answer, "cell");
    let took = browser.script("return document.querySelector('#answer-time').textContent");
    eprintln!("try it: {took}");
    browser.screenshot(&shots.join("studio-try.png"));
    // Live from the (test pattern) camera: answers keep coming while it runs.
    browser.click("#try-webcam");
    let live = browser.wait_for(
        "const t = document.querySelector('#answer-time');
         return t && t.dataset.roundTrip !== undefined && document.querySelector('#try-video').hidden === false
           && window.performance.getEntriesByName(location.origin + '/api/predict').length >= 3
           && performance.getEntriesByName(location.origin + '/api/predict').length",
        Duration::from_secs(30),
    );
    eprintln!("live webcam: {live} answers so far");
    browser.click("#try-webcam");

    browser.click("nav button[data-tab=audit]");
    browser.click("#run-audit");
    let name = misfiled.file_name().unwrap().to_str().unwrap();
    let flagged = format!("photo/{name}");
    browser.wait_for(
        &format!("return document.querySelector('.issue[data-path=\"{flagged}\"] button.suggested') !== null"),
        Duration::from_secs(60),
    );
    browser.screenshot(&shots.join("studio-audit.png"));
    browser.click(&format!(".issue[data-path=\"{flagged}\"] button.suggested"));
    wait_shown(
        &browser,
        &format!("section[data-class=cell] figure[data-path=\"cell/{name}\"]"),
        true,
    );
    assert!(folder.join("cell").join(name).is_file());
    assert!(!folder.join("photo").join(name).exists());

    browser.click("nav button[data-tab=train]");
    let started = Instant::now();
    browser.click("#train");
    let before_after = browser.wait_for(
        "const a = document.querySelector('#before-after'); return a && a.textContent",
        Duration::from_secs(60),
    );
    eprintln!(
        "retraining after the move answered in {:.2} s: {before_after}",
        started.elapsed().as_secs_f64()
    );

    browser.click("nav button[data-tab=ship]");
    let bytes = downloaded(&browser, "#download-bundle");
    let saved = dir.path().join("from-the-page.hs");
    std::fs::write(&saved, bytes).unwrap();
    let predicted = headstart_ok(&[
        "predict",
        saved.to_str().unwrap(),
        tried.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let predicted: Value = serde_json::from_str(&predicted).unwrap();
    assert_eq!(predicted["predictions"][0]["label"], "cell", "{predicted}");
    // The head alone, exported from the page, is what `headstart export --head-only` writes from the bundle.
    let head = downloaded(&browser, "#export-head");
    let by_cli = dir.path().join("head.onnx");
    headstart_ok(&[
        "export",
        saved.to_str().unwrap(),
        "-o",
        by_cli.to_str().unwrap(),
        "--head-only",
    ]);
    assert_eq!(head, std::fs::read(&by_cli).unwrap());
    // The int8 file, calibrated on the folder's images, is what `headstart export --int8` makes of the bundle
    // calibrated on the same folder.
    let int8 = downloaded(&browser, "#export-int8");
    let by_cli = dir.path().join("int8.onnx");
    headstart_ok(&[
        "export",
        saved.to_str().unwrap(),
        "-o",
        by_cli.to_str().unwrap(),
        "--int8",
        "--calibration-data",
        folder.to_str().unwrap(),
    ]);
    assert!(
        int8 == std::fs::read(&by_cli).unwrap(),
        "the int8 files differ"
    );
    // The folder keeps the bundle, not the exports made from it.
    let kept: Vec<String> = std::fs::read_dir(folder.join(".headstart"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["studio.hs"]);
    browser.screenshot(&shots.join("studio-ship.png"));
}

/// `from`'s files linked (or copied) into `to`, class folders and all: a studio may move them there.
fn linked_copy(from: &Path, to: &Path) {
    for class in std::fs::read_dir(from).unwrap() {
        let class = class.unwrap().path();
        let into = to.join(class.file_name().unwrap());
        std::fs::create_dir_all(&into).unwrap();
        for file in std::fs::read_dir(&class).unwrap() {
            let file = file.unwrap().path();
            let target = into.join(file.file_name().unwrap());
            if std::fs::hard_link(&file, &target).is_err() {
                std::fs::copy(&file, &target).unwrap();
            }
        }
    }
}

/// The figures the issue asks for, on all of ELPV (2,624 images, embedded before the page opens): the first
/// thumbnails, retraining after moving one image, and an answer in "try it". Printed for the notes; a timed
/// assertion would fail on a busy machine, so only that each happened is checked.
#[test]
fn timings_on_all_of_elpv() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("elpv");
    linked_copy(&headstart::datasets::elpv_by_defect().unwrap(), &folder);
    let studio = Studio::start(&folder);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    agent
        .post(format!("{}/api/train", studio.base))
        .header("x-headstart-token", &studio.token)
        .send_json(serde_json::json!({}))
        .unwrap();

    let browser = Browser::start();
    browser.open(&studio.url);
    let first = browser.wait_for(
        "const first = performance.getEntriesByType('resource')
           .filter(e => e.name.includes('/api/thumbnail/')).map(e => e.responseEnd);
         const shown = document.querySelector('#classes img');
         return first.length > 0 && shown && shown.complete && shown.naturalWidth > 0 && Math.min(...first)",
        Duration::from_secs(60),
    );
    // Every image is counted; a chunk per class is on the page, the next one a click away.
    let counted = browser.script(
        "return [...document.querySelectorAll('#classes .count')].map(c => parseInt(c.textContent)).reduce((a, b) => a + b)",
    );
    assert_eq!(counted, 2624);
    let shown = "return document.querySelectorAll('section[data-class=functional] figure').length";
    assert_eq!(browser.script(shown), 240);
    browser.click("section[data-class=functional] button.more");
    assert_eq!(browser.script(shown), 480);
    eprintln!(
        "ELPV: first thumbnail in {:.0} ms from navigation",
        first.as_f64().unwrap()
    );

    let moved = change(
        &browser,
        "section[data-class=functional] figure select.move",
        "defective",
    );
    let name = moved.rsplit('/').next().unwrap().to_string();
    browser.wait_for(
        &format!(
            "return document.querySelector('figure[data-path=\"defective/{name}\"]') !== null"
        ),
        Duration::from_secs(30),
    );
    browser.click("nav button[data-tab=train]");
    let started = Instant::now();
    browser.click("#train");
    let changed = browser.wait_for(
        "const a = document.querySelector('#before-after'); return a && a.textContent",
        Duration::from_secs(120),
    );
    eprintln!(
        "ELPV: retrained after moving one image in {:.2} s (click to result): {changed}",
        started.elapsed().as_secs_f64()
    );

    browser.click("nav button[data-tab=try]");
    let tried = elpv_class("defective")[5].clone();
    browser.send_keys("#try-file", tried.to_str().unwrap());
    let round_trip = browser.wait_for(
        "const t = document.querySelector('#answer-time'); return t && t.dataset.roundTrip",
        Duration::from_secs(30),
    );
    eprintln!("ELPV: try it answered in {round_trip} ms (upload to answer, in the page)");
}

/// The rows of a text table as (text, label), in file order; and that none was skipped.
fn table_rows(path: &Path) -> Vec<(String, String)> {
    let table = headstart::data::TextTable::open(path, Default::default()).unwrap();
    let read = table.read().unwrap();
    assert!(read.skipped.is_empty(), "{:?}", read.skipped);
    read.items
        .iter()
        .map(|item| (item.text.clone(), read.classes[item.label.unwrap()].clone()))
        .collect()
}

/// Types `texts` into the data page with their `label`, and waits for the class to show as many rows.
fn type_texts(browser: &Browser, label: &str, texts: &[String]) {
    browser.script("document.querySelector('#new-label').value = ''");
    browser.send_keys("#new-texts", &texts.join("\n"));
    browser.send_keys("#new-label", label);
    browser.click("#add-texts");
    browser.wait_for(
        &format!(
            "return document.querySelectorAll('section[data-class={label}] tr').length === {}",
            texts.len()
        ),
        Duration::from_secs(10),
    );
}

/// The demo's customer questions, (text, label) in its order.
fn questions() -> Vec<(String, String)> {
    table_rows(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/questions.csv"))
}

/// The same loop on a text table made from nothing: rows typed in with their labels (one filed under the wrong
/// one), a label edited and undone, a row removed and put back, trained, a confusion cell opened, a question
/// tried, the misfiled row found by the audit and relabelled, trained again, the bundle taken.
#[test]
fn the_loop_on_a_text_table() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("questions.csv");
    let studio = Studio::start(&table);
    let browser = Browser::start();
    let shots = screenshot_dir();
    browser.open(&studio.url);
    browser.wait_for(
        "return document.querySelector('#text-bar').hidden === false",
        Duration::from_secs(10),
    );
    // What is for images is out of sight: the class box, the image drop and webcam of "try it".
    assert_eq!(
        browser.script(
            "return ['#image-bar', '#try-images', '#text-bar', '#try-texts']
               .map(s => getComputedStyle(document.querySelector(s)).display)"
        ),
        serde_json::json!(["none", "none", "flex", "flex"])
    );

    // The demo's questions, class by class in its order; its first delivery question goes in as billing.
    let examples = questions();
    let misfiled = "Where is my parcel?";
    let mut typed: Vec<(String, Vec<String>)> = Vec::new();
    for (text, label) in &examples {
        let label = if text == misfiled {
            "billing"
        } else {
            label.as_str()
        };
        match typed.iter_mut().find(|(l, _)| l == label) {
            Some((_, texts)) => texts.push(text.clone()),
            None => typed.push((label.to_string(), vec![text.clone()])),
        }
    }
    for (label, texts) in &typed {
        type_texts(&browser, label, texts);
    }
    let expected: Vec<(String, String)> = typed
        .iter()
        .flat_map(|(label, texts)| texts.iter().map(|t| (t.clone(), label.clone())))
        .collect();
    assert_eq!(table_rows(&table), expected);
    assert_eq!(
        browser.script("return document.querySelector('#data-summary').textContent"),
        "3 classes, 48 rows"
    );
    browser.screenshot(&shots.join("studio-text-data.png"));

    // A label edited in place, and undone: the file is as it was.
    let before_edit = std::fs::read(&table).unwrap();
    let edited = change(
        &browser,
        "section[data-class=account] input.label",
        "delivery",
    );
    let edited = edited.as_str();
    wait_shown(
        &browser,
        &format!("section[data-class=delivery] tr[data-path=\"{edited}\"]"),
        true,
    );
    let line: usize = edited.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(table_rows(&table)[line - 2].1, "delivery");
    browser.click("#message button");
    wait_shown(
        &browser,
        &format!("section[data-class=account] tr[data-path=\"{edited}\"]"),
        true,
    );
    assert_eq!(std::fs::read(&table).unwrap(), before_edit);

    // The last row removed to the trash table and put back.
    let last = "questions.csv:49";
    browser.click(&format!("tr[data-path=\"{last}\"] button.trash"));
    wait_shown(&browser, &format!("tr[data-path=\"{last}\"]"), false);
    let trash = dir.path().join(".headstart-trash").join("questions.csv");
    assert_eq!(table_rows(&trash), [expected[47].clone()]);
    assert_eq!(table_rows(&table), expected[..47]);
    browser.click("#message button");
    wait_shown(&browser, &format!("tr[data-path=\"{last}\"]"), true);
    assert_eq!(std::fs::read(&table).unwrap(), before_edit);
    assert!(table_rows(&trash).is_empty());

    let accuracy = trained_in_page(&browser);
    assert!(accuracy > 80.0, "{accuracy}");
    browser.screenshot(&shots.join("studio-text-train.png"));
    // The misfiled question is among the mistakes, shown as its text.
    let mistakes = browser.script("return document.querySelector('#mistakes').textContent");
    assert!(mistakes.as_str().unwrap().contains(misfiled), "{mistakes}");
    let count: u64 = browser
        .script(
            "return document.querySelector('#confusion td.cell[data-truth=\"2\"][data-predicted=\"2\"]').textContent"
        )
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    browser.click("#confusion td.cell[data-truth=\"2\"][data-predicted=\"2\"]");
    let shown = browser.wait_for(
        "const v = document.querySelector('#cell'); return !v.hidden && v.querySelectorAll('.item .text').length",
        Duration::from_secs(10),
    );
    assert_eq!(shown.as_u64().unwrap(), count);
    browser.click("#cell-close");

    browser.click("nav button[data-tab=try]");
    let question = "My package still has not arrived, where is it?";
    browser.send_keys("#try-text", question);
    browser.click("#try-ask");
    let answer = browser.wait_for(
        "const a = document.querySelector('#answer'); return a && a.textContent",
        Duration::from_secs(30),
    );
    assert_eq!(answer, "delivery");
    browser.screenshot(&shots.join("studio-text-try.png"));

    browser.click("nav button[data-tab=audit]");
    browser.click("#run-audit");
    let flagged = "questions.csv:18";
    let why = browser.wait_for(
        &format!("const b = document.querySelector('.issue[data-path=\"{flagged}\"] button.suggested'); return b && b.textContent"),
        Duration::from_secs(60),
    );
    assert_eq!(why, "move to delivery");
    browser.click(&format!(".issue[data-path=\"{flagged}\"] button.suggested"));
    wait_shown(
        &browser,
        &format!("section[data-class=delivery] tr[data-path=\"{flagged}\"]"),
        true,
    );
    let mut fixed = expected.clone();
    fixed[16].1 = "delivery".into();
    assert_eq!(fixed[16].0, misfiled);
    assert_eq!(table_rows(&table), fixed);

    // Trained again with the features chosen by cross-validation.
    browser.click("nav button[data-tab=train]");
    browser.script("document.querySelector('#train-form select[name=features]').value = 'auto'");
    browser.click("#train");
    let before_after = browser.wait_for(
        "const a = document.querySelector('#before-after'); return a && a.textContent",
        Duration::from_secs(120),
    );
    eprintln!("text table: {before_after}");
    let compared = browser.script(
        "return [...document.querySelectorAll('#features tr')].slice(1).map(r => r.firstChild.textContent)",
    );
    let compared: Vec<&str> = compared
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(compared.len() > 1, "{compared:?}");
    assert!(
        compared[0].starts_with("all-minilm-l6-v2 (its output)"),
        "{compared:?}"
    );
    assert_eq!(
        compared.iter().filter(|c| c.ends_with(" (chosen)")).count(),
        1,
        "{compared:?}"
    );
    browser.screenshot(&shots.join("studio-text-retrain.png"));
    // And on the backbone's output with `unknown` for what is unlike the data (on these 48 questions a late
    // layer's features, when chosen, keep an off-topic text as close as the questions are to each other).
    browser.script("document.querySelector('#train-form select[name=features]').value = 'given'");
    browser.click("#open-set");
    browser.click("#train");
    browser.wait_for(
        "const a = document.querySelector('#accuracy'); return a && a.parentElement.textContent.includes('answers unknown')",
        Duration::from_secs(60),
    );
    browser.click("nav button[data-tab=try]");
    let off_topic = "The recipe needs two eggs and a cup of flour";
    browser.script("document.querySelector('#try-text').value = ''");
    browser.send_keys("#try-text", off_topic);
    browser.click("#try-ask");
    let novel = browser.wait_for(
        "const n = document.querySelector('#novelty'); return n && n.textContent",
        Duration::from_secs(30),
    );
    assert!(novel.as_str().unwrap().starts_with("unlike"), "{novel}");
    assert_eq!(
        browser.script("return document.querySelector('#answer').textContent"),
        "unknown"
    );

    browser.click("nav button[data-tab=ship]");
    let bundle = downloaded(&browser, "#download-bundle");
    let saved = dir.path().join("from-the-page.hs");
    std::fs::write(&saved, bundle).unwrap();
    let predicted = headstart_ok(&[
        "predict",
        saved.to_str().unwrap(),
        question,
        off_topic,
        "--format",
        "json",
    ]);
    let predicted: Value = serde_json::from_str(&predicted).unwrap();
    assert_eq!(
        predicted["predictions"][0]["label"], "delivery",
        "{predicted}"
    );
    assert_eq!(
        predicted["predictions"][1]["label"], "unknown",
        "{predicted}"
    );
    let kept: Vec<String> = std::fs::read_dir(dir.path().join(".headstart"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["questions.hs"]);
}

/// A folder of `.txt` class folders: one class written before, two typed in the page (each text a file named after
/// its first words), a label edited (the file moves to the other class folder) and undone, a text removed to the
/// trash and put back, trained, a question tried, the bundle taken.
#[test]
fn the_loop_on_a_folder_of_texts() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("questions");
    let folder = headstart::data::DatasetFolder::open(&root).unwrap();
    let mut by_class: Vec<(String, Vec<String>)> = Vec::new();
    for (text, label) in questions() {
        match by_class.iter_mut().find(|(l, _)| *l == label) {
            Some((_, texts)) => texts.push(text),
            None => by_class.push((label, vec![text])),
        }
    }
    let (first, texts) = &by_class[0];
    for text in texts {
        folder.add_text(first, text).unwrap();
    }
    // Started on a backbone named, to train on another from the form below.
    let studio = Studio::start_with(&[
        "studio",
        root.to_str().unwrap(),
        "--backbone",
        "all-minilm-l6-v2",
    ]);
    let browser = Browser::start();
    browser.open(&studio.url);
    browser.wait_for(
        "return document.querySelector('#text-bar').hidden === false",
        Duration::from_secs(10),
    );
    for (label, texts) in &by_class[1..] {
        type_texts(&browser, label, texts);
    }
    // Every text is a file in its class's folder.
    let on_disk = || -> Vec<(String, String)> {
        let headstart::data::Data::Texts(read) =
            headstart::data::Data::open(&root, &Default::default()).unwrap()
        else {
            panic!("not texts")
        };
        let mut rows: Vec<(String, String)> = read
            .items
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    std::fs::read_to_string(root.join(&i.id)).unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let before = on_disk();
    assert_eq!(before.len(), 48);
    assert!(before.iter().all(|(id, text)| {
        by_class
            .iter()
            .any(|(label, texts)| id.starts_with(&format!("{label}/")) && texts.contains(text))
    }));

    let edited = change(
        &browser,
        "section[data-class=account] input.label",
        "delivery",
    );
    let name = edited.rsplit('/').next().unwrap().to_string();
    wait_shown(
        &browser,
        &format!("section[data-class=delivery] tr[data-path=\"delivery/{name}\"]"),
        true,
    );
    assert!(
        root.join("delivery").join(&name).is_file() && !root.join("account").join(&name).exists()
    );
    browser.click("#message button");
    wait_shown(
        &browser,
        &format!("section[data-class=account] tr[data-path=\"account/{name}\"]"),
        true,
    );
    assert_eq!(on_disk(), before);
    browser.click(&format!("tr[data-path=\"account/{name}\"] button.trash"));
    wait_shown(
        &browser,
        &format!("tr[data-path=\"account/{name}\"]"),
        false,
    );
    assert!(root.join(".headstart-trash/account").join(&name).is_file());
    browser.click("#message button");
    wait_shown(&browser, &format!("tr[data-path=\"account/{name}\"]"), true);
    assert_eq!(on_disk(), before);

    let accuracy = trained_in_page(&browser);
    assert!(accuracy > 80.0, "{accuracy}");
    browser.click("nav button[data-tab=try]");
    let question = "My package still has not arrived, where is it?";
    browser.send_keys("#try-text", question);
    browser.click("#try-ask");
    let answer = browser.wait_for(
        "const a = document.querySelector('#answer'); return a && a.textContent",
        Duration::from_secs(30),
    );
    assert_eq!(answer, "delivery");
    browser.click("nav button[data-tab=ship]");
    let saved = dir.path().join("from-the-page.hs");
    std::fs::write(&saved, downloaded(&browser, "#download-bundle")).unwrap();
    let predicted = headstart_ok(&[
        "predict",
        saved.to_str().unwrap(),
        question,
        "--format",
        "json",
    ]);
    let predicted: Value = serde_json::from_str(&predicted).unwrap();
    assert_eq!(
        predicted["predictions"][0]["label"], "delivery",
        "{predicted}"
    );

    // Trained again on the float32 backbone chosen in the form: the ONNX file is made with that backbone, not
    // the one the studio was started with.
    browser.script("document.querySelector('#backbone').value = 'all-minilm-l6-v2-fp32'");
    let accuracy = trained_in_page(&browser);
    assert!(accuracy > 80.0, "{accuracy}");
    let headline =
        browser.script("return document.querySelector('#accuracy').parentElement.textContent");
    assert!(
        headline
            .as_str()
            .unwrap()
            .contains("on all-minilm-l6-v2-fp32"),
        "{headline}"
    );
    let exported = ureq::get(format!("{}/api/export/fp32", studio.base))
        .header("x-headstart-token", &studio.token)
        .call()
        .unwrap()
        .into_body()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    let onnx = dir.path().join("questions-fp32.onnx");
    std::fs::write(&onnx, &exported).unwrap();
    let described = headstart_ok(&["inspect", onnx.to_str().unwrap()]);
    assert!(described.contains("attention_mask"), "{described}");
}
